"""Watch: ordered delivery from a revision, Gone after compaction, list + watch together."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.api import Kind
from kukeon.store import EmbeddedEtcd, Gone, Registry, Unavailable, WatchEvent
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.services import require_binary

from .objects import realm, space, with_labels

pytestmark = pytest.mark.integration


async def _collect(stream: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    async for event in stream:
        events.append(event)
        if len(events) == count:
            break
    return events


async def _nothing_more(stream: AsyncIterator[WatchEvent], wait: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(anext(stream), wait)
    except TimeoutError:
        return True
    return False


async def test_watch_from_a_revision_delivers_exactly_the_later_events(registry: Registry) -> None:
    current = await registry.create(realm("r", labels={"n": "0"}))
    start = int(current.metadata.resource_version or 0)
    written: list[int] = []
    for n in range(1, 1001):
        current = await registry.update(with_labels(current, {"n": str(n)}))
        written.append(int(current.metadata.resource_version or 0))

    stream = registry.watch(Kind.REALM, resource_version=start)
    events = await asyncio.wait_for(_collect(stream, 1000), 30)
    assert [event.revision for event in events] == written
    assert [event.object.metadata.labels["n"] for event in events] == [
        str(n) for n in range(1, 1001)
    ]
    assert {event.type for event in events} == {"MODIFIED"}
    assert all(e.object.metadata.resource_version == str(e.revision) for e in events)
    assert await _nothing_more(stream)
    await stream.aclose()  # type: ignore[attr-defined]


async def test_watch_reports_added_modified_deleted_in_scope(registry: Registry) -> None:
    for name in ("r1", "r2"):
        await registry.create(realm(name))
    start = await registry.current_revision()
    stream = registry.watch(Kind.SPACE, ("r1",), resource_version=start)
    collecting = asyncio.create_task(_collect(stream, 3))
    created = await registry.create(space("r1", "a"))
    await registry.create(space("r2", "elsewhere"))
    await registry.update(with_labels(created, {"x": "y"}))
    await registry.delete(Kind.SPACE, ("r1", "a"))
    events = await asyncio.wait_for(collecting, 10)
    assert [(e.type, e.object.metadata.name) for e in events] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
    ]
    deleted = events[2]
    assert deleted.object.metadata.labels == {"x": "y"}
    assert deleted.object.metadata.resource_version == str(deleted.revision)


@pytest.fixture
async def private_registry() -> AsyncIterator[Registry]:
    """A registry on an etcd of its own: compaction must not touch the shared server's history."""
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukeon-compact-", dir="/dev/shm"))
    try:
        async with EmbeddedEtcd(data_dir=root, binary=binary) as etcd:
            async with await Registry.connect(etcd.config()) as registry:
                yield registry
            await etcd.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_compacted_revision_is_gone_and_list_then_watch_misses_nothing(
    private_registry: Registry,
) -> None:
    registry = private_registry
    await registry.create(realm("r"))
    old = await registry.current_revision()
    for index in range(20):
        await registry.create(space("r", f"s{index}"))
    await registry.client.compact(await registry.current_revision(), physical=True)

    with pytest.raises(Gone) as gone:
        async for _ in registry.watch(Kind.SPACE, resource_version=old):
            pass
    assert gone.value.compacted_revision > old

    # The relist protocol: list, then watch from the list's revision while writes go on.
    async def writer() -> None:
        for index in range(20, 60):
            await registry.create(space("r", f"s{index}"))
        for index in range(0, 60, 3):
            await registry.delete(Kind.SPACE, ("r", f"s{index}"))

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0.01)
    listed = await registry.list(Kind.SPACE)
    known = {item.metadata.name for item in listed.items}
    stream = registry.watch(Kind.SPACE, resource_version=listed.resource_version)
    await writing
    final_revision = await registry.current_revision()
    async for event in stream:
        if event.type == "DELETED":
            known.discard(event.object.metadata.name)
        else:
            known.add(event.object.metadata.name)
        if event.revision >= final_revision:
            break
    expected = {f"s{index}" for index in range(60) if index % 3}
    assert known == expected
    assert {item.metadata.name for item in (await registry.list(Kind.SPACE)).items} == expected


async def test_closing_the_registry_ends_its_watches(
    etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    registry = await Registry.connect(etcd_server.config(key_prefix=etcd_key_prefix))
    start = await registry.current_revision()

    async def watch() -> None:
        async for _ in registry.watch(Kind.REALM, resource_version=start):
            pass

    watching = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    await registry.close()
    with pytest.raises(Unavailable, match="closed"):
        await asyncio.wait_for(watching, 10)
