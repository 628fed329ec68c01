"""hack/etcd-cluster.sh: start, idempotent start, stop, restart with the same data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.api import Kind
from kukeon.store import EtcdConfig, Registry, StoreError
from kukeon.store.pki import EtcdPki
from tests.fixtures.services import require_binary

from .objects import realm

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "etcd-cluster.sh"


def _free_block(size: int = 6) -> int:
    for _ in range(100):
        base = random.randrange(40000, 60000, 2)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free block of loopback ports")


def _run(*args: str) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _read(path: Path) -> str:
    return path.read_text().strip()


def _pids(root: Path) -> list[str]:
    return sorted(_read(path) for path in root.glob("*.pid"))


async def _read_one(config: EtcdConfig) -> None:
    async with await Registry.connect(config) as registry:
        await registry.get(Kind.REALM, ("kept",))


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    require_binary("etcd", "etcd-server")
    require_binary("curl", "curl")
    root = Path(tempfile.mkdtemp(prefix="kukeon-script-", dir="/dev/shm"))
    try:
        yield root
    finally:
        # SIGKILL what is left: the data is thrown away, a graceful stop takes seconds.
        for pidfile in root.glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text())
                # Only our own member: the pid file must still name an etcd of this dir.
                if str(root) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


async def test_script_starts_stops_and_keeps_data(cluster_dir: Path) -> None:
    base = _free_block()
    endpoints = (
        await asyncio.to_thread(_run, "start", str(cluster_dir), "--base-port", str(base))
    ).strip()
    assert endpoints == ",".join(f"https://127.0.0.1:{base + 2 * i}" for i in range(3))
    assert await asyncio.to_thread(_read, cluster_dir / "endpoints") == endpoints
    # Idempotent: a second start leaves the running members alone.
    pids = await asyncio.to_thread(_pids, cluster_dir)
    await asyncio.to_thread(_run, "start", str(cluster_dir))
    assert await asyncio.to_thread(_pids, cluster_dir) == pids

    pki = EtcdPki(cluster_dir / "pki")
    config = EtcdConfig(
        endpoints=endpoints.split(","),
        ca_file=pki.ca_file,
        cert_file=pki.client_cert_file,
        key_file=pki.client_key_file,
    )
    async with await Registry.connect(config) as registry:
        created = await registry.create(realm("kept"))
    # Without the client certificate (or in plaintext) the cluster answers nobody.
    for refused in (
        EtcdConfig(endpoints=endpoints.split(","), ca_file=pki.ca_file, retry_timeout=1.0),
        EtcdConfig(endpoints=[f"127.0.0.1:{base}"], retry_timeout=1.0),
    ):
        with pytest.raises(StoreError):
            await _read_one(refused)
    await asyncio.to_thread(_run, "stop", str(cluster_dir))
    await asyncio.to_thread(_run, "stop", str(cluster_dir))
    assert "m0 stopped" in await asyncio.to_thread(_run, "status", str(cluster_dir))

    await asyncio.to_thread(_run, "start", str(cluster_dir))
    async with await Registry.connect(config) as registry:
        assert await registry.get(Kind.REALM, ("kept",)) == created


def test_script_help_and_bad_usage() -> None:
    assert "Usage: hack/etcd-cluster.sh start DIR" in _run("--help")
    bad = subprocess.run(
        ["bash", str(SCRIPT), "explode"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
