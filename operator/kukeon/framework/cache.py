"""A read-only view of the newest version of every object the operator watches.

The operator lists and watches each kind it has handlers for once (``watching``), and the
object queues keep the newest version of every object they were given (``queueing``).
``WatchedObjects`` lets handlers read other objects from there instead of etcd: a
controller's parent lookups then cost no round trip per pass. What it promises:

- only kinds whose first list is done are ``covered``; for any other kind a handler
  reads the store as before;
- an object absent from a covered kind is absent (not created yet, or deleted);
- a version can lag etcd by the watch's delay. A handler waiting on another object says
  so (``WaitingError(on=Awaited(...))``) and the queues run it again when a newer
  version arrives, so a lag delays a child by one event, never by a poll.

The objects are the queues' own: callers must not modify them (``model_copy`` first).

Leader loops list whole kinds from here (``list``) instead of etcd on every pass: one
informer per kind per kukeond (issue 18). ``CachedReads`` is how they read: the cache
when it covers the kind, else a list from etcd (a loop run without an operator, unit
tests), with what the loop itself wrote laid over it until the watch shows it
(``RecentWrites``, kube-scheduler's "assumed" objects): a cell bound, created or deleted
in one pass counts as such in the next even if the watch has not delivered it yet. Writes
stay compare-and-swap on resourceVersion, so a decision taken on a stale version fails
with a Conflict (or NotFound for a deleted key) and the next pass decides again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kukeon.api import Kind, key_of

from .protocols import AnyResource, ObjectKey, Store

Lookup = Callable[[Kind, ObjectKey], AnyResource | None]
Listed = Callable[[Kind], bool]
Objects = Callable[[Kind], list[AnyResource]]
Revision = Callable[[Kind], int]

RECENT_WRITE_SECONDS = 30.0
"""How long a write is laid over the cache at most (kube-scheduler's assume TTL): past
that the watch is trusted (a relist may never show a version deleted meanwhile)."""


def _no_objects(_: Kind) -> list[AnyResource]:
    return []


def _no_revision(_: Kind) -> int:
    return 0


def under(key: ObjectKey, scope: Sequence[str]) -> bool:
    """Whether ``key`` lies under ``scope`` (its parents' names; every key when empty)."""
    return tuple(key[: len(scope)]) == tuple(scope) and len(key) > len(scope)


def _etcd_order(obj: AnyResource) -> str:
    return "/".join(key_of(obj))


class WatchedObjects:
    """The newest watched version of an object, per kind and key."""

    def __init__(
        self,
        *,
        lookup: Lookup,
        listed: Listed,
        objects: Objects = _no_objects,
        revision: Revision = _no_revision,
    ) -> None:
        self._lookup = lookup
        self._listed = listed
        self._objects = objects
        self._revision = revision

    def covers(self, kind: Kind) -> bool:
        """Whether ``kind`` is watched and its first list is in."""
        return self._listed(kind)

    def get(self, kind: Kind, key: ObjectKey) -> AnyResource | None:
        """The newest version seen; None when absent (only meaningful if ``covers``)."""
        return self._lookup(kind, key)

    def list(self, kind: Kind, *, scope: Sequence[str] = ()) -> list[AnyResource]:
        """The newest version of every object of ``kind`` under ``scope``, in the order of
        their keys as etcd lists them (only meaningful if ``covers``)."""
        found = [obj for obj in self._objects(kind) if not scope or under(key_of(obj), scope)]
        return sorted(found, key=_etcd_order)

    def revision(self, kind: Kind) -> int:
        """The newest revision of ``kind`` the watch delivered: every write of that kind at
        or below it is in ``list`` (the watch delivers a kind's events in order)."""
        return self._revision(kind)


@dataclass(frozen=True)
class _Written:
    version: AnyResource | None
    """What the store returned (None: the object is gone)."""
    revision: int
    """The written version's (or, once gone, the last known version's) resourceVersion."""
    at: float


class RecentWrites:
    """What a loop wrote, laid over the cache's list until the watch shows it (see the
    module). A written version is dropped once the kind's watch is at its revision or
    beyond (it delivered the write, or what came after); a deletion once the cache no
    longer holds the key at the deleted version; either after ``ttl`` seconds."""

    def __init__(
        self, *, ttl: float = RECENT_WRITE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._written: dict[tuple[Kind, ObjectKey], _Written] = {}

    def __len__(self) -> int:
        return len(self._written)

    def wrote(self, obj: AnyResource) -> None:
        """``obj`` is the version the store returned for a write of this loop."""
        key = (Kind(obj.kind), key_of(obj))
        self._written[key] = _Written(obj, revision_of(obj), self._clock())

    def removed(self, obj: AnyResource) -> None:
        """``obj`` (its last version known here) was deleted from the store."""
        key = (Kind(obj.kind), key_of(obj))
        self._written[key] = _Written(None, revision_of(obj), self._clock())

    def overlay(
        self, kind: Kind, listed: list[AnyResource], seen: int, *, scope: Sequence[str] = ()
    ) -> list[AnyResource]:
        """``listed`` (the cache's, up to revision ``seen``) with this loop's writes the
        cache does not show yet in their place."""
        now = self._clock()
        by_key = {key_of(obj): obj for obj in listed}
        changed = False
        for (written_kind, key), written in list(self._written.items()):
            if written_kind != kind:
                continue
            cached = by_key.get(key)
            if now - written.at > self.ttl or self._shown(written, cached, seen):
                del self._written[(written_kind, key)]
                continue
            if scope and not under(key, scope):
                continue
            changed = True
            if written.version is None:
                by_key.pop(key, None)
            else:
                by_key[key] = written.version
        if not changed:
            return listed
        return sorted(by_key.values(), key=_etcd_order)

    @staticmethod
    def _shown(written: _Written, cached: AnyResource | None, seen: int) -> bool:
        if written.version is None:
            return cached is None or revision_of(cached) > written.revision
        return seen >= written.revision or revision_of(cached) >= written.revision


class CachedReads:
    """A leader loop's per-pass lists: the operator's cache when it covers the kind, with
    the loop's own recent writes laid over it (``RecentWrites``); else etcd."""

    def __init__(self, store: Store, *, writes: RecentWrites | None = None) -> None:
        self.store = store
        self.writes = writes if writes is not None else RecentWrites()
        self.source: Callable[[], WatchedObjects | None] = lambda: None
        """Where the cache is (the operator's, once started: ``Operator.cache``)."""
        self.store_lists = 0
        """Lists that went to etcd (the kind was not covered)."""

    def covers(self, kind: Kind) -> bool:
        cache = self.source()
        return cache is not None and cache.covers(kind)

    async def list(self, kind: Kind, scope: Sequence[str] = ()) -> list[AnyResource]:
        """Every ``kind`` under ``scope``: newest known versions, this loop's writes included."""
        cache = self.source()
        if cache is None or not cache.covers(kind):
            # etcd's list is linearizable: it holds every write that returned before it.
            self.store_lists += 1
            return list((await self.store.list(kind, tuple(scope))).items)
        listed = cache.list(kind, scope=scope)
        return self.writes.overlay(kind, listed, cache.revision(kind), scope=scope)


def revision_of(obj: AnyResource | None) -> int:
    """An object's resourceVersion as a number; 0 for an absent one."""
    if obj is None:
        return 0
    return int(obj.metadata.resource_version or 0)
