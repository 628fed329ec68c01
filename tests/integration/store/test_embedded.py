"""The embedded etcd: starts on free loopback ports, keeps its data across restarts."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.api import Kind
from kukeon.store import EmbeddedEtcd, Registry, WatchEvent
from tests.fixtures.services import require_binary

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
