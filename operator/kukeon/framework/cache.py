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
"""

from __future__ import annotations

from collections.abc import Callable

from kukeon.api import Kind

from .protocols import AnyResource, ObjectKey

Lookup = Callable[[Kind, ObjectKey], AnyResource | None]
Listed = Callable[[Kind], bool]


class WatchedObjects:
    """The newest watched version of an object, per kind and key."""

    def __init__(self, *, lookup: Lookup, listed: Listed) -> None:
        self._lookup = lookup
        self._listed = listed

    def covers(self, kind: Kind) -> bool:
        """Whether ``kind`` is watched and its first list is in."""
        return self._listed(kind)

    def get(self, kind: Kind, key: ObjectKey) -> AnyResource | None:
        """The newest version seen; None when absent (only meaningful if ``covers``)."""
        return self._lookup(kind, key)


def revision_of(obj: AnyResource | None) -> int:
    """An object's resourceVersion as a number; 0 for an absent one."""
    if obj is None:
        return 0
    return int(obj.metadata.resource_version or 0)
