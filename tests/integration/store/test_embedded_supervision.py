"""The embedded etcd lives and dies with its owner, and comes back when it dies alone.

- kill -9 of the owner (kukeond): etcd gets SIGKILL from the kernel (parent-death
  signal), and the next start is not held up;
- an etcd left running on the data directory anyway (pidfile, or found by its
  ``--data-dir``) is stopped by the next start, which then serves the same data;
- etcd killed alone while its owner runs: started again on the same address, clients
  carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.api import Kind
from kukeon.store import EmbeddedEtcd, EtcdConfig, Registry
from kukeon.store import pki as pki_module
from tests.fixtures.services import require_binary

from .objects import realm

pytestmark = pytest.mark.integration

OWNER = """
import asyncio, sys
from pathlib import Path
from kukeon.store import EmbeddedEtcd

async def main() -> None:
    etcd = EmbeddedEtcd(data_dir=Path(sys.argv[1]), binary=sys.argv[2], restart_on_exit=True)
    await etcd.start()
    print(etcd.member.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kukeon-etcd-sup-", dir="/dev/shm"))
    try:
        yield path
    finally:
        _kill_etcd_on(path / "etcd")
        shutil.rmtree(path, ignore_errors=True)


def _kill_etcd_on(data_dir: Path) -> None:
    """Whatever a failed test left serving this data directory."""
    wanted = f"--data-dir\0{data_dir}\0".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if wanted in Path(f"/proc/{entry}/cmdline").read_bytes():
                    os.kill(int(entry), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


async def _wait_dead(pid: int, within: float) -> float:
    started = time.monotonic()
    while _alive(pid):
        assert time.monotonic() - started < within, f"pid {pid} still alive after {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _config_of(root: Path) -> EtcdConfig:
    """How to reach the etcd another process started on ``root`` (its socket and
    certificates are in the directory: nothing of the process is needed)."""
    return EmbeddedEtcd(data_dir=root).config()


async def test_kill_9_of_the_owner_takes_etcd_along(root: Path) -> None:
    binary = require_binary("etcd", "etcd-server")
    require_binary("setpriv", "util-linux")
    data = root / "etcd"
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, str(data), binary, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert owner.stdout is not None
        async with asyncio.timeout(60):
            etcd_pid = int(await owner.stdout.readline())
        assert (data / "etcd.pid").read_text().strip() == str(etcd_pid)
        async with await Registry.connect(_config_of(data)) as registry:
            created = await registry.create(realm("kept"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            owner.kill()
        await owner.wait()
    # The kernel kills etcd when its parent goes: nothing is left to block the next start.
    await _wait_dead(etcd_pid, within=5.0)

    started = time.monotonic()
    async with EmbeddedEtcd(data_dir=data, binary=binary) as etcd:
        assert time.monotonic() - started < 10.0
        async with await Registry.connect(etcd.config()) as registry:
            assert await registry.get(Kind.REALM, ("kept",)) == created


async def test_a_stale_etcd_on_the_data_directory_is_stopped_and_replaced(root: Path) -> None:
    """As after kill -9 of a kukeond whose etcd had no parent-death signal."""
    binary = require_binary("etcd", "etcd-server")
    data = root / "etcd"
    first = EmbeddedEtcd(data_dir=data, binary=binary)
    await first.start()
    stale_pid = first.member.pid
    assert stale_pid is not None
    assert (data / "etcd.pid").read_text().strip() == str(stale_pid)
    async with await Registry.connect(first.config()) as registry:
        created = await registry.create(realm("kept"))

    second = EmbeddedEtcd(data_dir=data, binary=binary)
    started = time.monotonic()
    try:
        await second.start()
        elapsed = time.monotonic() - started
        assert not _alive(stale_pid)
        assert second.member.pid != stale_pid
        assert elapsed < 10.0, f"the next start took {elapsed:.1f}s"
        assert (data / "etcd.pid").read_text().strip() == str(second.member.pid)
        async with await Registry.connect(second.config()) as registry:
            assert await registry.get(Kind.REALM, ("kept",)) == created
    finally:
        await second.kill()
        await first.kill()


async def test_a_pidfile_naming_another_process_is_left_alone(root: Path) -> None:
    binary = require_binary("etcd", "etcd-server")
    data = root / "etcd"
    await asyncio.to_thread(data.mkdir)
    bystander = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        await asyncio.to_thread((data / "etcd.pid").write_text, f"{bystander.pid}\n")
        async with EmbeddedEtcd(data_dir=data, binary=binary):
            assert bystander.returncode is None
            assert _alive(bystander.pid)
    finally:
        bystander.kill()
        await bystander.wait()


async def test_etcd_killed_alone_is_started_again(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    binary = require_binary("etcd", "etcd-server")
    caplog.set_level(logging.INFO, logger="kukeon.store.embedded")
    etcd = EmbeddedEtcd(data_dir=root / "etcd", binary=binary, restart_on_exit=True)
    await etcd.start()
    try:
        endpoint, first_pid = etcd.endpoint, etcd.member.pid
        assert first_pid is not None
        async with await Registry.connect(etcd.config(retry_timeout=30.0)) as registry:
            await registry.create(realm("before"))
            os.kill(first_pid, signal.SIGKILL)
            await _wait_dead(first_pid, within=5.0)
            # The registry's retries ride through the restart.
            await registry.create(realm("after"))
            # The supervisor counts the restart once its health check passes, which may
            # be a moment after the registry got through.
            for _ in range(200):
                if etcd.restarts:
                    break
                await asyncio.sleep(0.05)
            assert etcd.restarts == 1
            assert etcd.endpoint == endpoint
            assert etcd.member.pid not in (None, first_pid)
            names = {item.metadata.name for item in (await registry.list(Kind.REALM)).items}
            assert names == {"before", "after"}
        exits = [r for r in caplog.records if "exited" in r.getMessage()]
        assert len(exits) == 1, [r.getMessage() for r in caplog.records]
    finally:
        await etcd.stop()
    # Stopped on purpose: not started again.
    await asyncio.sleep(1.0)
    assert not etcd.running
    assert not (root / "etcd" / "etcd.pid").exists()


async def test_certificates_made_again_at_a_restart_are_taken_by_running_clients(
    root: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd killed alone while the clock reads days before its certificates were made (a
    clock stepped back): the supervisor's start makes a new CA and leaves (``ensure_pki``,
    which says why), and a client whose channel was opened with the old ones opens it again
    with the new files (``EtcdClient.mend``) instead of failing every handshake until its
    owner restarts."""
    binary = require_binary("etcd", "etcd-server")
    caplog.set_level(logging.INFO)
    etcd = EmbeddedEtcd(data_dir=root / "etcd", binary=binary, restart_on_exit=True)
    await etcd.start()
    try:
        old_ca = etcd.pki.ca_file.read_bytes()
        async with await Registry.connect(etcd.config(retry_timeout=30.0)) as registry:
            await registry.create(realm("before"))
            stepped = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3)
            monkeypatch.setattr(pki_module, "_now", lambda: stepped)
            first_pid = etcd.member.pid
            assert first_pid is not None
            os.kill(first_pid, signal.SIGKILL)
            await _wait_dead(first_pid, within=5.0)
            await registry.create(realm("after"))
            names = {item.metadata.name for item in (await registry.list(Kind.REALM)).items}
            assert names == {"before", "after"}
        assert etcd.pki.ca_file.read_bytes() != old_ca
        said = [r.getMessage() for r in caplog.records]
        assert any("is made again" in line and "stepped back" in line for line in said), said
        assert any("TLS files changed" in line for line in said), said
    finally:
        await etcd.stop()
