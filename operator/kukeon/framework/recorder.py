"""The event recorder: controllers say what happened, without waiting for etcd.

``EventRecorder.event(obj, reason, message)`` only puts the occurrence on a bounded queue
and returns: writing an Event must never slow down, block or fail a reconcile. One
supervised task (``run``, started with ``start``) writes the queue to the store:

- a repeat of an Event this recorder wrote (same object, reason and message) is one
  compare-and-swap that bumps its ``count`` (the last stored version is kept in a small
  LRU cache, as client-go's EventCorrelator does); after a restart, or when the cache
  forgot it, the store reads and bumps it;
- an occurrence that names itself (``occurrence=``: which exit of which task) is counted
  once, however many times it is reported: two reconcile passes can both see one thing
  happen (the second on a cached object that does not show the first one's status write
  yet, or a retry of a pass that failed after reporting it). The occurrences queued are
  remembered in a bounded LRU (``cache_size``) for the life of the recorder;
- both caches hold live objects' entries only, once the recorder follows an operator's
  changes (``object_changed``, an ``Operator.on_change`` listener): a deleted object's
  entries go, and an Event of an object not known alive (one written after its object's
  delete was seen: queued before it, or reported by a pass that ran on) is written but
  not kept. A new object has another uid, so nothing would ever bump them again: under
  create/delete churn they filled both LRUs to their bounds (~3 KiB per cached Event);
- when the queue is full the occurrence is dropped, and so is one etcd will not take
  (unreachable beyond a few seconds of retries): both are counted in
  ``kukeon_events_dropped_total{reason}`` and logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from kukeon.api import (
    EVENT_KINDS,
    AnyResource,
    Event,
    EventType,
    InvolvedObject,
    Kind,
    key_of,
    new_event,
)

from .aiotasks import SupervisedTask, Supervisor
from .metrics import FrameworkMetrics

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1024
DEFAULT_CACHE_SIZE = 4096
_LOG_EVERY_SECONDS = 60.0
_EVENT_KINDS = frozenset(EVENT_KINDS)

_Object = tuple[tuple[str, ...], str | None]
"""An object's key and uid: another object of the same name has another uid."""

DROPPED_QUEUE_FULL = "queue_full"
DROPPED_WRITE_FAILED = "write_failed"


class EventSink(Protocol):
    """Where Events go (``kukeon.store.events.EventStore``)."""

    async def record(self, occurrence: Event, *, seen: Event | None = None) -> Event: ...


def _now() -> datetime:
    return datetime.now(UTC)


class EventRecorder:
    """A bounded queue of occurrences and the task that writes them."""

    def __init__(
        self,
        *,
        sink: EventSink,
        node_name: str,
        metrics: FrameworkMetrics | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._sink = sink
        self.node_name = node_name
        self._metrics = metrics
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_size)
        self._cache: collections.OrderedDict[tuple[str, str], Event] = collections.OrderedDict()
        self._cache_size = cache_size
        self._occurrences: collections.OrderedDict[tuple[str, str, str], _Object] = (
            collections.OrderedDict()
        )
        """(realm, Event name, occurrence) of the occurrences already queued -> their
        object."""
        self._live: dict[tuple[str, ...], str | None] | None = None
        """Key -> uid of the objects ``object_changed`` says exist (None until it is first
        called: a recorder that follows no operator keeps every object's entries)."""
        self.repeats = 0
        """Occurrences not counted again (see ``occurrence``)."""
        self._clock = clock
        self.dropped: collections.Counter[str] = collections.Counter()
        self.written = 0
        self._logged_at: float | None = None
        if metrics is not None:
            for reason in (DROPPED_QUEUE_FULL, DROPPED_WRITE_FAILED):
                metrics.events_dropped_total.labels(reason)  # present from the start, at 0

    # --- what controllers call -----------------------------------------------------------

    def event(
        self,
        obj: AnyResource,
        reason: str,
        message: str,
        *,
        type: EventType = EventType.NORMAL,
        occurrence: str | None = None,
    ) -> None:
        """Record that ``reason`` happened to ``obj``; returns at once, never raises.

        ``occurrence`` names what happened when more than one pass may report it (an
        exit: the task and its exit time): reported again, it is not counted again.
        """
        kind = Kind(obj.kind)
        if kind not in _EVENT_KINDS:
            return
        involved = InvolvedObject.of(kind.value, key_of(obj), obj.metadata.uid)
        self.record(involved, reason, message, type=type, occurrence=occurrence)

    def record(
        self,
        involved: InvolvedObject,
        reason: str,
        message: str,
        *,
        type: EventType = EventType.NORMAL,
        occurrence: str | None = None,
    ) -> None:
        event = new_event(
            involved=involved,
            reason=reason,
            message=message,
            type=type,
            at=self._clock(),
            node=self.node_name,
        )
        seen = None
        if occurrence is not None:
            seen = (event.metadata.realm, event.metadata.name, occurrence)
            if seen in self._occurrences:
                self._occurrences.move_to_end(seen)
                self.repeats += 1
                log.debug("Event %s of %s: %s already recorded", reason, involved.path, occurrence)
                return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._drop(DROPPED_QUEUE_FULL, event, "the recorder's queue is full")
            return
        if seen is not None and self._alive(involved):
            self._occurrences[seen] = _object_of(involved)
            while len(self._occurrences) > self._cache_size:
                self._occurrences.popitem(last=False)

    def object_changed(self, obj: AnyResource, deleted: bool) -> None:
        """A change listener (``Operator.on_change``): ``obj`` exists, or once deleted, its
        cached Events and occurrences go (see the module)."""
        if self._live is None:
            self._live = {}
        key, uid = tuple(key_of(obj)), obj.metadata.uid
        known = key in self._live
        before = self._live.get(key)
        if not deleted:
            self._live[key] = uid
            if known and before != uid:
                self._forget((key, before))  # re-created while the watch was away
            return
        if known and before == uid:
            del self._live[key]
        self._forget((key, uid))

    def _forget(self, gone: _Object) -> None:
        for name, stored in list(self._cache.items()):
            if _object_of(stored.involved_object) == gone:
                del self._cache[name]
        for seen, owner in list(self._occurrences.items()):
            if owner == gone:
                del self._occurrences[seen]

    def _alive(self, involved: InvolvedObject) -> bool:
        if self._live is None:
            return True
        key = involved.key
        return key in self._live and self._live[key] == involved.uid

    # --- the writer ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self, supervisor: Supervisor, *, component: str = "controllers") -> SupervisedTask:
        return supervisor.start("kukeon-events", self.run, component=component)

    async def run(self) -> None:
        """Write occurrences as they come, until cancelled."""
        while True:
            occurrence = await self._queue.get()
            await self._write(occurrence)

    async def flush(self) -> None:
        """Write what is queued now (a stopping daemon's last Events), then return."""
        while not self._queue.empty():
            await self._write(self._queue.get_nowait())

    async def _write(self, occurrence: Event) -> None:
        name = (occurrence.metadata.realm, occurrence.metadata.name)
        seen = self._cache.get(name)
        try:
            stored = await self._sink.record(occurrence, seen=seen)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._cache.pop(name, None)
            self._drop(DROPPED_WRITE_FAILED, occurrence, str(error))
            return
        self.written += 1
        if self._metrics is not None:
            self._metrics.events_written_total.inc()
        if not self._alive(occurrence.involved_object):
            self._cache.pop(name, None)  # its object's delete came while it was queued
            return
        self._cache[name] = stored
        self._cache.move_to_end(name)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _drop(self, reason: str, occurrence: Event, why: str) -> None:
        self.dropped[reason] += 1
        if self._metrics is not None:
            self._metrics.events_dropped_total.labels(reason).inc()
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            now = None
        recently = self._logged_at is not None and now is not None
        if recently and now is not None and now - (self._logged_at or 0.0) < _LOG_EVERY_SECONDS:
            return
        self._logged_at = now
        log.warning(
            "Event %s %s of %s dropped (%s: %s); %d dropped so far",
            occurrence.reason,
            occurrence.type,
            occurrence.involved_object.path,
            reason,
            why[:200],
            sum(self.dropped.values()),
        )


def _object_of(involved: InvolvedObject) -> _Object:
    return (involved.key, involved.uid)
