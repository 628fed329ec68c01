"""kill -9 or SIGTERM kukeond in the middle of a copy into a container (``kukectl cp``).

The upload's tar writes the file under a hidden name beside its destination
(``/tmp/.f.kukeon-cp-TOKEN``, kukeon.daemon.cpstage). A kukeond stopped gracefully removes it
before it exits; one killed leaves it, and the next kukeond removes it at start (its
journal under the state directory names it). Either way the file that was there is left
as it was. The container's files are read through the root of its task (/proc/PID/root).
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from kukeon.api import DesiredCellState, Kind
from kukeon.daemon.cpstage import JOURNALS, STAGE_MARK

from .helpers import SLEEPER, rewrite
from .test_crash_recovery import Setup, _doc, make_hierarchy
from .test_crash_recovery import crashable as crashable  # the fixture, re-exported

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
CID = "s1_st1_box_main"


def _archive(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo("f")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def _box(s: Setup) -> Path:
    """A running cell ``box`` with /tmp/f; its container's /tmp, as the host reaches it."""
    await make_hierarchy(s)
    spec = {"realmId": s.realm, "spaceId": "s1", "stackId": "st1"}
    main = {"id": "main", "image": s.image.name, "command": "sh", "args": SLEEPER}
    await s.registry.create(
        _doc(kind="Cell", metadata={"name": "box"}, spec={**spec, "containers": [main]})
    )
    await s.wait(Kind.CELL, (s.realm, "s1", "st1", "box"), "Ready", within=60)
    pid = (await s.containerd.tasks(s.namespace).get(CID)).pid
    tmp = Path(f"/proc/{pid}/root/tmp")
    (tmp / "f").write_bytes(b"old")
    return tmp


def _staged(tmp: Path) -> list[Path]:
    return [path for path in tmp.iterdir() if STAGE_MARK in path.name]


async def _upload_half_then(s: Setup, tmp: Path, end: str) -> None:
    """Send half of a 4 MB upload onto /tmp/f; once tar has written some of it under its
    hidden name, ``end`` the daemon ("kill": SIGKILL, "stop": SIGTERM) under the copy."""
    upload = _archive(os.urandom(4_000_000))
    url = f"{API}/realms/{s.realm}/spaces/s1/stacks/st1/cells/box/cp"
    connector = aiohttp.UnixConnector(path=str(s.state_dir.parent / "run" / "kukeond.sock"))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.ws_connect(url, params={"path": "/tmp/f", "mode": "write"}) as socket,
    ):
        for start in range(0, len(upload) // 2, 50_000):
            await socket.send_bytes(b"\x00" + upload[start : start + 50_000])
        async with asyncio.timeout(20):
            while sum(path.stat().st_size for path in _staged(tmp)) < 100_000:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.to_thread(s.daemon.kill if end == "kill" else s.daemon.stop)


async def test_kill_9_mid_upload_the_next_kukeond_removes_the_staged_file(
    crashable: Setup,
) -> None:
    s = crashable
    tmp = await _box(s)
    await _upload_half_then(s, tmp, "kill")
    left = _staged(tmp)
    assert left, "the killed kukeond left nothing: it was not killed mid-upload"
    assert list((s.state_dir / JOURNALS).iterdir())

    s.daemon.start()
    # The journal goes after the files it names (so a kill between keeps it): wait for both.
    async with asyncio.timeout(60):
        while _staged(tmp) or list((s.state_dir / JOURNALS).iterdir()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert (tmp / "f").read_bytes() == b"old"
    assert "removed what an upload cut short" in s.daemon.tail()


async def test_sigterm_mid_upload_removes_the_staged_file_before_exiting(
    crashable: Setup,
) -> None:
    s = crashable
    tmp = await _box(s)
    await _upload_half_then(s, tmp, "stop")
    assert s.daemon.process is not None
    assert s.daemon.process.returncode is not None
    assert _staged(tmp) == [], s.daemon.tail()
    assert (tmp / "f").read_bytes() == b"old"
    assert list((s.state_dir / JOURNALS).iterdir()) == []


async def _desired(s: Setup, state: DesiredCellState) -> None:
    """The box cell's desiredState, as `kukectl stop` / `kukectl start` write it."""
    key = (s.realm, "s1", "st1", "box")

    def changed(cell: Any) -> Any:
        spec = cell.spec.model_copy(update={"desired_state": state})
        return cell.model_copy(update={"spec": spec})

    await rewrite(cast(Any, s), Kind.CELL, key, changed)


async def test_kill_9_mid_upload_of_a_stopped_container_the_file_goes_once_it_starts(
    crashable: Setup,
) -> None:
    """kukeond killed mid-upload, and the container's task stopped before kukeond is back:
    the next kukeond finds no task to reach the staged file through and keeps the journal.
    Started again (`kukectl start`), the container's new task is the way in: the staged file
    goes then, without another restart of kukeond (before, it stayed until one)."""
    s = crashable
    tmp = await _box(s)
    await _upload_half_then(s, tmp, "kill")
    assert _staged(tmp), "the killed kukeond left nothing: it was not killed mid-upload"
    await _desired(s, DesiredCellState.STOPPED)  # kukeond is down: it sees this at start
    tasks = s.containerd.tasks(s.namespace)
    await tasks.stop(CID, grace_period=5)
    s.daemon.start()
    async with asyncio.timeout(60):
        while "runs no task" not in s.daemon.log.read_text(errors="replace"):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    await s.wait(Kind.CELL, (s.realm, "s1", "st1", "box"), "Stopped", within=60)
    assert list((s.state_dir / JOURNALS).iterdir()), "the journal went with no task to use"

    await _desired(s, DesiredCellState.RUNNING)
    await s.wait(Kind.CELL, (s.realm, "s1", "st1", "box"), "Ready", within=60)
    started = len(s.daemon.starts)
    tmp = Path(f"/proc/{(await tasks.get(CID)).pid}/root/tmp")
    async with asyncio.timeout(30):
        while _staged(tmp) or list((s.state_dir / JOURNALS).iterdir()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert (tmp / "f").read_bytes() == b"old"
    assert "removed what an upload cut short" in s.daemon.log.read_text(errors="replace")
    assert len(s.daemon.starts) == started == 2  # the one restart after the kill
