"""The embedded etcd on a full disk, for real: its data directory on a tmpfs of the test's
own, filled while etcd runs.

etcd exits at its next commit the disk refuses; its supervisor tries to start it again,
each refused try naming the directory to free, never with two etcds on the data at once
(an etcd spawned whose pidfile the full disk refused is stopped, not left running
unrecorded); the space keeper does not crash meanwhile; once room is freed etcd serves
again, with what it acknowledged before."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import aetcd
import pytest

from kukeon.api import Kind
from kukeon.store import EmbeddedEtcd, Registry, Unavailable
from kukeon.store.spacekeeping import keep_space
from tests.fixtures.fulldisk import fill, tmpfs
from tests.fixtures.services import require_binary

from .objects import realm

pytestmark = pytest.mark.integration


def etcds_on(data_dir: Path) -> list[int]:
    """The live etcd processes of the embedded etcd kept in ``data_dir`` (etcd's own data
    is its ``etcd/``)."""
    wanted = f"--data-dir\0{data_dir / 'etcd'}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if wanted in Path(f"/proc/{entry}/cmdline").read_bytes():
                    state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
                    if state and state[0] not in {"Z", "X"}:
                        found.append(int(entry))
    return found


async def test_an_etcd_whose_disk_fills_serves_again_once_room_is_freed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    binary = require_binary("etcd", "etcd-server")
    caplog.set_level(logging.INFO, logger="kukeon.store")
    # etcd preallocates 64 MB of write-ahead log, and its file pipeline the next 64 MB
    # segment beside it, at any moment from the start: room for both and a few MB of
    # data (96 MB let the pipeline's segment fill the disk before the first commit, and
    # etcd failed at its first start: CI, 1 run in 2).
    with tmpfs(tmp_path / "disk", "160m") as disk:
        data = disk / "etcd"
        etcd = EmbeddedEtcd(data_dir=data, binary=binary, restart_on_exit=True)
        await etcd.start()
        filler: Path | None = None
        try:
            first = etcd.member.pid
            assert first is not None
            async with await Registry.connect(etcd.config(retry_timeout=3.0)) as registry:
                keeper = asyncio.create_task(keep_space(registry.client, interval=0.2))
                await registry.create(realm("before"))
                filler = await asyncio.to_thread(fill, disk)
                value = os.urandom(256 << 10)
                with pytest.raises((Unavailable, aetcd.ClientError)):  # noqa: PT012
                    for number in range(400):  # until etcd dies of the full disk
                        await registry.client.put(f"/filler/{number}".encode(), value)
                for _ in range(600):
                    if first not in etcds_on(data):
                        break
                    await asyncio.sleep(0.05)
                assert first not in etcds_on(data)

                # Its restarts are refused while the disk is full; never two at once.
                for _ in range(100):
                    assert len(etcds_on(data)) <= 1
                    if any("did not start again" in r.getMessage() for r in caplog.records):
                        break
                    await asyncio.sleep(0.1)
                said = [r.getMessage() for r in caplog.records]
                hint = f"(in {data}: started again once room is freed)"
                assert any("did not start again" in m and hint in m for m in said), said
                assert not keeper.done()  # etcd away is no crash of the space keeper

                await asyncio.to_thread(filler.unlink)
                filler = None
                for _ in range(900):  # the supervisor's back-off is at most 30 s
                    if etcd.restarts:
                        break
                    assert len(etcds_on(data)) <= 1
                    await asyncio.sleep(0.05)
                assert etcd.restarts >= 1
                assert etcds_on(data) == [etcd.member.pid]
                names = {item.metadata.name for item in (await registry.list(Kind.REALM)).items}
                assert "before" in names
                assert not keeper.done()
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
        finally:
            if filler is not None:
                filler.unlink()
            await etcd.stop()
