"""The embedded etcd: serves on unix sockets in its data directory, keeps its data across
restarts, kill -9 (whose sockets it leaves behind) and an upgrade from loopback ports."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.api import Kind
from kukeon.store import EmbeddedEtcd, EtcdProcess, EtcdStartError, Registry, WatchEvent
from kukeon.store.connection import EtcdClient
from kukeon.store.pki import ensure_pki
from tests.fixtures.services import free_tcp_port, require_binary

from .objects import realm, with_labels

pytestmark = pytest.mark.integration


@pytest.fixture
async def embedded() -> AsyncIterator[EmbeddedEtcd]:
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukeon-embedded-", dir="/dev/shm"))
    etcd = EmbeddedEtcd(data_dir=root, binary=binary)
    try:
        await etcd.start()
        yield etcd
    finally:
        await etcd.kill()
        shutil.rmtree(root, ignore_errors=True)


async def test_data_survives_stop_and_start(embedded: EmbeddedEtcd) -> None:
    endpoint = embedded.endpoint
    async with await Registry.connect(embedded.config()) as registry:
        created = await registry.create(realm("kept", labels={"a": "b"}))
    await embedded.stop()
    assert not embedded.running
    await embedded.start()
    assert embedded.endpoint == endpoint
    async with await Registry.connect(embedded.config()) as registry:
        assert await registry.get(Kind.REALM, ("kept",)) == created


async def test_data_survives_a_crash(embedded: EmbeddedEtcd) -> None:
    async with await Registry.connect(embedded.config()) as registry:
        created = await registry.create(realm("kept"))
    await embedded.kill()
    # A killed etcd leaves its socket, on which etcd 3.4 refuses to start by itself.
    assert embedded.client_socket.is_socket()
    await embedded.start()
    async with await Registry.connect(embedded.config()) as registry:
        assert await registry.get(Kind.REALM, ("kept",)) == created


async def test_registry_and_watch_ride_through_a_restart(embedded: EmbeddedEtcd) -> None:
    async with await Registry.connect(embedded.config(retry_timeout=30)) as registry:
        current = await registry.create(realm("r", labels={"n": "0"}))
        start = int(current.metadata.resource_version or 0)
        seen: list[WatchEvent] = []

        async def watch() -> None:
            async for event in registry.watch(Kind.REALM, resource_version=start):
                seen.append(event)
                if event.object.metadata.labels["n"] == "10":
                    return

        watching = asyncio.create_task(watch())
        for n in range(1, 6):
            current = await registry.update(with_labels(current, {"n": str(n)}))
        await asyncio.sleep(0.2)
        await embedded.restart()
        for n in range(6, 11):
            current = await registry.update(with_labels(current, {"n": str(n)}))
        await asyncio.wait_for(watching, 30)
        assert [event.object.metadata.labels["n"] for event in seen] == [
            str(n) for n in range(1, 11)
        ]
        revisions = [event.revision for event in seen]
        assert revisions == sorted(set(revisions))


async def _membership(etcd: EmbeddedEtcd) -> list[tuple[list[str], list[str]]]:
    client = EtcdClient(etcd.config())
    try:
        return [(list(m.peer_urls), list(m.client_urls)) async for m in client.members()]
    finally:
        await client.close()


async def test_a_data_directory_served_on_loopback_ports_is_served_on_sockets() -> None:
    """kukeon before the sockets ran the member on 127.0.0.1 ports (ports.json beside):
    upgraded in place, kukeond serves the same data, and etcd's membership names the
    sockets, not the old ports."""
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukeon-embedded-tcp-", dir="/dev/shm"))
    etcd = EmbeddedEtcd(data_dir=root, binary=binary)
    try:
        pki = await asyncio.to_thread(ensure_pki, root / "pki")  # the old names: 127.0.0.1
        ports = {"client": free_tcp_port(), "peer": free_tcp_port()}
        await asyncio.to_thread((root / "ports.json").write_text, json.dumps(ports))
        old = EtcdProcess(
            name="kukeon",
            data_dir=root / "etcd",
            client_port=ports["client"],
            peer_port=ports["peer"],
            binary=binary,
            log_path=root / "etcd.log",
            pki=pki,
        )
        await old.start()
        try:
            old_config = etcd.config(endpoints=[old.client_url])
            async with await Registry.connect(old_config) as registry:
                created = await registry.create(realm("kept"))
        finally:
            await old.stop()
        for _ in range(2):  # the upgrade, then an ordinary start
            await etcd.start()
            async with await Registry.connect(etcd.config()) as registry:
                assert await registry.get(Kind.REALM, ("kept",)) == created
            assert await _membership(etcd) == [(["unixs://peer:0"], ["unixs://client:0"])]
            assert not (root / "ports.json").exists()
            await etcd.stop()
    finally:
        await etcd.kill()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_socket_path_too_long_is_refused_before_anything_starts(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * max(1, 110 - len(str(tmp_path))))
    with pytest.raises(EtcdStartError, match=r"bytes, over the 107 a unix socket address holds"):
        await EmbeddedEtcd(data_dir=deep, binary="/nonexistent").start()
    assert not deep.exists()
