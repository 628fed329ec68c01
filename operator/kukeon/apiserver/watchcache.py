"""The API server's watch cache: GET and LIST answered from memory, never older than etcd.

One list + watch per kind (the metrics' ``DocumentInformer`` loop, with this cache in
place of its ``DocumentCache``) keeps every object of the cached kinds and, beside each,
its answer already encoded: the compact JSON of ``to_document`` -- what the handler sent
when it read etcd, so a Realm's registry passwords are redacted exactly as before. Secrets
are not cached: their values stay where they were (read from etcd and opened per request).
In kukeond the metrics collectors read the cached kinds from here too (``documents``,
``synced``, from the scrape thread), so the process keeps one copy of each document.

Consistency (as kube-apiserver's consistent reads from its watch cache, Kubernetes 1.31):
a read is served at a revision at least as new as etcd's at the moment the request
arrived, so a client never reads older than its own previous write (nor than anything
any client had been answered before it asked). ``fresh(kind)`` reads etcd's current
revision R (a count-only range, shared by the reads that arrived before it was sent:
``RevisionReads``); when the kind's cache has applied R, the read is
answered from memory. When it has not (the last writes were of other kinds, or this
kind's events are still on their way), etcd is asked once whether any key of the kind
was written after the cache's revision, and how many keys the kind has
(``Registry.kind_state``): no key written since and as many keys as the cache holds means
the cache already holds the kind as of R; a key written since, or fewer keys (a delete),
means the watch has events to deliver, and the read waits for them and asks again; more
keys with none written since are documents the watch never delivers (invalid ones,
written to etcd by hand), and the read goes to etcd. (An invalid document and an
undelivered delete at once would cancel out in the count: only possible after a hand
edit of etcd, and only until the delete's event arrives, milliseconds later.)
etcd 3.4's watch progress notifications may overtake events, so they are not used. A
cache that is not listed yet or cannot catch up within ``cache_wait`` seconds is bypassed:
the read goes to etcd as before. Concurrent reads of a kind share one such check, a task
of its own: a read that leaves while it is on its way (its ``cache_wait`` ran out on a
stalled loop, its client went away) does not cancel it, and the reads still waiting take
its answer instead of asking etcd again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import NamedTuple, Protocol, runtime_checkable

from kukeon.api import AnyResource, Kind, key_of, to_document
from kukeon.cancelling import cancel_and_wait
from kukeon.framework.aiotasks import Supervisor
from kukeon.metrics.cache import DocumentCache, DocumentInformer, DocumentSource
from kukeon.store import LabelSelector, Unavailable, WatchEvent
from kukeon.store.reads import KindState
from kukeon.store.selectors import Operator

log = logging.getLogger(__name__)

CACHED_KINDS: tuple[Kind, ...] = (
    Kind.REALM,
    Kind.SPACE,
    Kind.STACK,
    Kind.CELL,
    Kind.NODE,
    Kind.CELL_PROFILE,
    Kind.CELL_SET,
)
"""Every kind but Secret, whose values are only opened for the request that reads them."""

ObjectKey = tuple[str, ...]
ANY = LabelSelector(())


class _Checked(NamedTuple):
    """A kind's check: the cache's revision and how many objects it held when the check was
    sent, and etcd's answer."""

    since: int
    held: int
    state: KindState


class CachedObject(NamedTuple):
    resource: AnyResource
    body: bytes
    """The GET answer: ``to_document(resource)`` as compact JSON."""
    revision: int


@runtime_checkable
class StateSource(DocumentSource, Protocol):
    """The registry as the watch cache uses it: list, watch, and the cheap freshness reads."""

    async def current_revision(self) -> int: ...

    async def kind_state(self, kind: Kind, since: int) -> KindState: ...


def encode_body(res: AnyResource) -> bytes:
    return json.dumps(to_document(res), separators=(",", ":")).encode()


class _KindContent:
    """One kind's objects, the revision they are current at, and who waits for it to move.

    ``labelled`` indexes the objects by each (label, value) they carry, so a LIST with an
    equality selector (``app=web``) reads only the objects it names, not the whole kind.
    """

    def __init__(self) -> None:
        self.objects: dict[ObjectKey, CachedObject] = {}
        self.labelled: dict[tuple[str, str], set[ObjectKey]] = {}
        self.revision = 0
        self.synced = False
        self.advanced = asyncio.Event()
        self.check: asyncio.Task[_Checked] | None = None
        """The kind's check on its way to etcd, shared by every read waiting for it."""
        self._order: list[ObjectKey] | None = None

    def moved(self, revision: int) -> None:
        if revision > self.revision:
            self.revision = revision
        self.advanced.set()
        self.advanced = asyncio.Event()

    def in_order(self) -> list[ObjectKey]:
        """The keys in etcd's order (their layout key: the names joined by '/')."""
        if self._order is None:
            self._order = sorted(self.objects, key="/".join)
        return self._order

    def put(self, key: ObjectKey, cached: CachedObject) -> None:
        previous = self.objects.get(key)
        if previous is None:
            self._order = None
        else:
            self._unindex(key, previous)
        self.objects[key] = cached
        for label in (cached.resource.metadata.labels or {}).items():
            self.labelled.setdefault(label, set()).add(key)

    def pop(self, key: ObjectKey) -> None:
        previous = self.objects.pop(key, None)
        if previous is not None:
            self._order = None
            self._unindex(key, previous)

    def refill(self, objects: Iterable[tuple[ObjectKey, CachedObject]]) -> None:
        """Hold exactly ``objects``: built aside, then swapped in, so a reader on another
        thread (a metrics scrape) sees the old set or the new one, never half of it."""
        fresh = _KindContent()
        for key, cached in objects:
            fresh.put(key, cached)
        self.objects, self.labelled, self._order = fresh.objects, fresh.labelled, None

    def _unindex(self, key: ObjectKey, cached: CachedObject) -> None:
        for label in (cached.resource.metadata.labels or {}).items():
            keys = self.labelled.get(label)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.labelled[label]

    def candidates(self, selector: LabelSelector) -> list[ObjectKey]:
        """The keys a selector may choose, in etcd's order: those of its `=` or `in` term
        with the fewest (an `in`'s are its values' together), or all."""
        named: list[set[ObjectKey]] = [
            set().union(*(self.labelled.get((term.key, value), set()) for value in term.values))
            for term in selector.requirements
            if term.operator in (Operator.EQUALS, Operator.IN)
        ]
        if not named:
            return self.in_order()
        fewest = min(named, key=len)
        return sorted(fewest, key="/".join)


class RevisionReads:
    """etcd's current revision, one read shared by every caller that arrived before it was sent.

    A caller that arrives while a read is in flight waits for the next one, sent after the
    first returns: a revision read sent before a request arrived could be older than a
    write acknowledged before it. 16 readers at once cost one or two round trips, not 16.
    """

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        # The callers the next read answers, each with its own future (a caller cancelled
        # while waiting cancels only its own; cheaper than asyncio.shield on one shared).
        self._next: list[asyncio.Future[int]] = []
        self._task: asyncio.Task[None] | None = None

    async def current(self) -> int:
        waiting: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._next.append(waiting)
        if self._task is None:
            self._task = asyncio.create_task(self._serve(), name="watch-cache-revision")
        return await waiting

    async def _serve(self) -> None:
        batch: list[asyncio.Future[int]] = []
        try:
            while self._next:
                batch, self._next = self._next, []
                try:
                    revision = await self._read()
                except asyncio.CancelledError:
                    if _being_cancelled():
                        raise
                    # The read's own cancellation (a gRPC call cancelled under it), not
                    # this task's: its callers get a 503, not a dropped connection each.
                    _answer(batch, error=Unavailable("etcd's revision read was cancelled"))
                except Exception as error:  # every waiter gets it (as a registry read's)
                    _answer(batch, error=error)
                else:
                    _answer(batch, revision=revision)
                batch = []
        finally:
            self._task = None
            for waiting in (*batch, *self._next):
                waiting.cancel()
            self._next = []

    async def close(self) -> None:
        task = self._task
        try:
            if task is not None:
                await cancel_and_wait(task)
        finally:
            for waiting in self._next:  # a task cancelled before it ran never answers them
                waiting.cancel()
            self._next = []


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _answer(
    batch: list[asyncio.Future[int]], *, revision: int = 0, error: Exception | None = None
) -> None:
    """Answer every caller of ``batch`` still waiting (a cancelled one has gone)."""
    for waiting in batch:
        if waiting.done():
            continue
        if error is None:
            waiting.set_result(revision)
        else:
            waiting.set_exception(error)


class WatchCache(DocumentCache):
    """The cached kinds' objects with their encoded answers, fed by a ``DocumentInformer``."""

    def __init__(self, *, registry: StateSource, cache_wait: float) -> None:
        super().__init__()
        self._registry = registry
        self._cache_wait = cache_wait
        self._kinds = {kind: _KindContent() for kind in CACHED_KINDS}
        self._informer: DocumentInformer | None = None
        self._revisions = RevisionReads(registry.current_revision)

    # --- feeding (called by the informer's loops) --------------------------------------

    def replace(self, kind: Kind, documents: Iterable[AnyResource], revision: int = 0) -> None:
        content = self._kinds.get(kind)
        if content is None:
            return
        content.refill(
            (key_of(res), CachedObject(res, encode_body(res), _revision_of(res)))
            for res in documents
        )
        content.synced = True
        if revision < content.revision:
            # A list is linearizable: older than the cache, etcd went back (restored from
            # an older snapshot), and the list is what it holds now.
            content.revision = revision
        content.moved(revision)

    def apply(self, event: WatchEvent) -> None:
        res = event.object
        content = self._kinds.get(Kind(res.kind))
        if content is None:
            return
        key = key_of(res)
        if event.type == "DELETED":
            content.pop(key)
        else:
            current = content.objects.get(key)
            if current is None or current.revision <= event.revision:
                content.put(key, CachedObject(res, encode_body(res), event.revision))
        content.moved(event.revision)

    # --- read by the metrics collectors, from the scrape thread --------------------------

    def documents(self, kind: Kind) -> list[AnyResource]:
        content = self._kinds.get(kind)
        if content is None:
            return []
        # Copying a dict's values runs without releasing the GIL: a whole snapshot even while
        # the event loop's thread applies an event (each a single dict store or pop).
        return [cached.resource for cached in list(content.objects.values())]

    def synced(self, kind: Kind) -> bool:
        content = self._kinds.get(kind)
        return content is not None and content.synced

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._informer is None:
            self._informer = DocumentInformer(
                store=self._registry, cache=self, kinds=CACHED_KINDS, supervisor=Supervisor()
            )
            await self._informer.start()

    async def stop(self) -> None:
        informer, self._informer = self._informer, None
        if informer is not None:
            await informer.stop()
        await self._revisions.close()
        for content in self._kinds.values():
            content.synced = False
            if content.check is not None:
                await cancel_and_wait(content.check)

    # --- reading -----------------------------------------------------------------------

    def cached(self, kind: Kind) -> bool:
        return kind in self._kinds

    def revision(self, kind: Kind) -> int:
        return self._kinds[kind].revision

    async def current_revision(self) -> int:
        """etcd's current revision, read once for every caller that arrived before it was sent."""
        return await self._revisions.current()

    def lookup(self, kind: Kind, key: ObjectKey) -> CachedObject | None:
        return self._kinds[kind].objects.get(key)

    def under(
        self, kind: Kind, scope: ObjectKey, selector: LabelSelector = ANY
    ) -> Iterator[CachedObject]:
        """The objects of ``kind`` under ``scope`` that ``selector`` chooses, in etcd's order."""
        content = self._kinds[kind]
        depth = len(scope)
        objects = content.objects
        for key in content.candidates(selector):
            if key[:depth] == scope:
                cached = objects[key]
                if selector.matches(cached.resource.metadata.labels):
                    yield cached

    async def fresh(self, kind: Kind) -> bool:
        """Whether ``kind``'s cache holds what etcd holds now (waiting for it a little).

        False (read etcd instead) when the kind is not cached or not listed yet, or when
        the cache did not catch up within ``cache_wait``.
        """
        content = self._kinds.get(kind)
        if content is None or not content.synced:
            return False
        wanted = await self._revisions.current()
        if content.revision >= wanted:
            return True
        try:
            async with asyncio.timeout(self._cache_wait):
                return await self._catch_up(kind, content, wanted)
        except TimeoutError:
            log.info(
                "watch cache of %s is behind revision %d (at %d): reading etcd",
                kind.value,
                wanted,
                content.revision,
            )
            return False

    async def _catch_up(self, kind: Kind, content: _KindContent, wanted: int) -> bool:
        while content.revision < wanted:
            advanced = content.advanced
            # One check at a time; the others take its answer. One sent before this read's
            # revision may answer for an older one: then the loop asks again.
            since, held, state = await asyncio.shield(self._shared_check(kind, content))
            if content.revision >= wanted:
                break
            if content.revision == since:
                if not state.changed_since and state.keys > held:
                    return False  # keys the watch never delivers: invalid documents
                await advanced.wait()  # the watch has this kind's change(s) on their way
        return content.synced

    def _shared_check(self, kind: Kind, content: _KindContent) -> asyncio.Task[_Checked]:
        """The kind's check on its way, or a new one: a task, not the first reader's call,
        so that reader leaving does not cancel it under the others."""
        if content.check is None:
            content.check = asyncio.create_task(
                self._check(kind, content), name=f"watch-cache-check {kind.value}"
            )
            content.check.add_done_callback(_retrieve)
        return content.check

    async def _check(self, kind: Kind, content: _KindContent) -> _Checked:
        """Ask etcd whether a key of ``kind`` was written since the cache's revision; when
        none was and it holds as many keys as the cache, the cache is current at etcd's."""
        try:
            since, held = content.revision, len(content.objects)
            try:
                state = await self._registry.kind_state(kind, since)
            except asyncio.CancelledError:
                if _being_cancelled():
                    raise
                # A gRPC call cancelled under it, as RevisionReads' read: its readers get a
                # 503, not a cancellation each (aiohttp drops such a connection unanswered).
                raise Unavailable(f"etcd's check of the {kind.value} keys was cancelled") from None
            unchanged = not state.changed_since and state.keys == held
            if content.revision == since and unchanged and content.synced:
                content.moved(state.revision)  # nothing of the kind changed since
            return _Checked(since, held, state)
        finally:
            content.check = None


def _retrieve(check: asyncio.Task[_Checked]) -> None:
    """Take a check's failure: every reader that waited for it may have left (each gets its
    own copy through asyncio.shield), and asyncio would log it as never retrieved."""
    if not check.cancelled():
        check.exception()


def _revision_of(res: AnyResource) -> int:
    try:
        return int(res.metadata.resource_version or 0)
    except ValueError:
        return 0
