"""The operator's cache listed by kind (issue 18): kinds watched without a handler, the
newest versions per kind and scope, the etcd fallback, and a loop's writes laid over it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from kukeon.api import Kind, Space, key_of, parse_resource
from kukeon.framework import Operator
from kukeon.framework.cache import CachedReads, RecentWrites, WatchedObjects
from kukeon.framework.protocols import AnyResource
from tests.unit.api.samples import space_doc

from .fakes import FakeStore, realm, relabel
from .test_operator import operator


def space(name: str, realm_id: str) -> Space:
    found = parse_resource(space_doc(name, realmId=realm_id))
    assert isinstance(found, Space)
    return found


async def settled(op: Operator, kind: Kind, done: Callable[[list[AnyResource]], bool]) -> None:
    """Until the cache's list of ``kind`` is ``done`` (the fake's watch is a task away)."""
    assert op.cache is not None
    async with asyncio.timeout(5):
        for _ in itertools.count():
            if done(op.cache.list(kind)):
                return
            await asyncio.sleep(0.01)


async def test_a_kind_watched_without_a_handler_is_listed_from_the_cache() -> None:
    store = FakeStore()
    first = await store.create(realm("b"))
    op = operator(store)
    op.watch(Kind.REALM)
    changes: list[tuple[str, bool]] = []
    op.on_change(Kind.REALM, lambda obj, deleted: changes.append((obj.metadata.name, deleted)))
    await op.start()
    try:
        assert op.cache is not None
        assert op.cache.covers(Kind.REALM)
        assert not op.cache.covers(Kind.CELL)
        await store.create(realm("a"))
        await store.update(relabel(first, tier="gold"))
        await settled(op, Kind.REALM, lambda listed: len(listed) == 2)
        listed = op.cache.list(Kind.REALM)
        assert [r.metadata.name for r in listed] == ["a", "b"]  # in etcd's key order
        await settled(op, Kind.REALM, lambda listed: listed[1].metadata.labels == {"tier": "gold"})
        assert op.cache.revision(Kind.REALM) == store.revision
        await store.delete(Kind.REALM, ("a",))
        await settled(op, Kind.REALM, lambda listed: len(listed) == 1)
        assert op.idle(), "nothing is run for a cached kind"
        assert op.queue_depth(Kind.REALM) == 0
        assert ("a", True) in changes
    finally:
        await op.stop()


async def test_the_cache_lists_within_a_scope() -> None:
    store = FakeStore()
    for name, realm_id in (("s1", "r1"), ("s2", "r2"), ("s3", "r1")):
        await store.create(space(name, realm_id))
    op = operator(store)
    op.watch(Kind.SPACE)
    await op.start()
    try:
        assert op.cache is not None
        assert [key_of(s) for s in op.cache.list(Kind.SPACE, scope=("r1",))] == [
            ("r1", "s1"),
            ("r1", "s3"),
        ]
        assert len(op.cache.list(Kind.SPACE)) == 3
        assert op.cache.list(Kind.SPACE, scope=("r9",)) == []
    finally:
        await op.stop()


class CountingStore(FakeStore):
    def __init__(self) -> None:
        super().__init__()
        self.lists: list[Kind] = []

    async def list(self, kind: Kind, *args: Any, **kwargs: Any) -> Any:
        self.lists.append(kind)
        return await super().list(kind, *args, **kwargs)


async def test_reads_fall_back_to_etcd_for_a_kind_the_cache_does_not_cover() -> None:
    store = CountingStore()
    await store.create(realm("a"))
    reads = CachedReads(store)
    # No operator (a unit test, a tool): every list is etcd's.
    assert [r.metadata.name for r in await reads.list(Kind.REALM)] == ["a"]
    assert store.lists == [Kind.REALM]
    assert reads.store_lists == 1
    op = operator(store)
    op.watch(Kind.REALM)
    reads.source = lambda: op.cache
    await op.start()
    try:
        store.lists.clear()
        assert [r.metadata.name for r in await reads.list(Kind.REALM)] == ["a"]
        assert await reads.list(Kind.SPACE) == []
        assert store.lists == [Kind.SPACE], "the covered kind was read from the cache"
    finally:
        await op.stop()


class Frozen:
    """A cache whose watch stopped: it shows what it held when frozen, at that revision."""

    def __init__(self, store: FakeStore) -> None:
        self.objects = dict(store.objects)
        self.revision = store.revision

    def cache(self) -> WatchedObjects:
        return WatchedObjects(
            lookup=lambda kind, key: self.objects.get((kind, key)),
            listed=lambda kind: True,
            objects=lambda kind: [o for (k, _), o in self.objects.items() if k == kind],
            revision=lambda kind: self.revision,
        )


async def test_a_loops_writes_show_until_the_watch_delivers_them() -> None:
    store = FakeStore()
    kept = await store.create(realm("kept"))
    gone = await store.create(realm("gone"))
    frozen = Frozen(store)
    reads = CachedReads(store)
    reads.source = frozen.cache
    written = await store.update(relabel(kept, tier="gold"))
    reads.writes.wrote(written)
    created = await store.create(realm("new"))
    reads.writes.wrote(created)
    assert await store.delete(Kind.REALM, ("gone",)) is None
    reads.writes.removed(gone)
    listed = {r.metadata.name: r for r in await reads.list(Kind.REALM)}
    assert set(listed) == {"kept", "new"}
    assert listed["kept"].metadata.labels == {"tier": "gold"}
    assert await reads.list(Kind.REALM, ("elsewhere",)) == []
    # The watch catches up: the cache's own versions are used and the overlay empties.
    caught_up = Frozen(store)
    reads.source = caught_up.cache
    listed = {r.metadata.name: r for r in await reads.list(Kind.REALM)}
    assert set(listed) == {"kept", "new"}
    assert len(reads.writes) == 0


def test_a_write_the_watch_never_shows_is_dropped_after_the_ttl() -> None:
    now = [0.0]
    writes = RecentWrites(ttl=30, clock=lambda: now[0])
    lone = realm("lone").model_copy(deep=True)
    lone.metadata.resource_version = "7"
    writes.wrote(lone)
    assert [r.metadata.name for r in writes.overlay(Kind.REALM, [], seen=3)] == ["lone"]
    assert writes.overlay(Kind.SPACE, [], seen=3) == [], "other kinds are not touched"
    now[0] = 31.0
    assert writes.overlay(Kind.REALM, [], seen=3) == []
    assert len(writes) == 0


def test_a_deleted_object_is_hidden_only_while_the_cache_holds_its_old_version() -> None:
    writes = RecentWrites()
    old = realm("x").model_copy(deep=True)
    old.metadata.resource_version = "5"
    writes.removed(old)
    assert writes.overlay(Kind.REALM, [old], seen=5) == []
    recreated = old.model_copy(deep=True)
    recreated.metadata.resource_version = "9"
    assert writes.overlay(Kind.REALM, [recreated], seen=9) == [recreated]
    assert len(writes) == 0
