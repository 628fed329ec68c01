"""An in-memory copy of every document, kept fresh by list + watch: what a scrape reads.

prometheus-client calls ``Collector.collect()`` synchronously (from the thread that
renders ``/metrics``), while the registry is asyncio and remote: a scrape must never wait
on etcd, and 500 cells must not cost 500 reads per scrape. So an informer task per kind
lists the kind once, then follows its watch and applies every ADDED/MODIFIED/DELETED to
a ``DocumentCache``; ``collect()`` only copies the cache's current values.

Recovery follows the registry's contract: ``Gone`` (the history the watch needed was
compacted) relists and replaces the kind wholesale, so objects deleted meanwhile vanish;
any other store failure (etcd away longer than the registry's retry budget) waits with
jittered backoff and resumes the watch from the last revision applied, so nothing is
missed or applied twice. Each kind's loop runs under a ``Supervisor`` (the daemon's, so a
crash is counted in ``kukeon_task_restarts_total``): anything else that goes wrong (a
bug) is logged with its traceback, and the loop is started again from a fresh list.
Until a kind's first list completes, ``synced(kind)`` is False and the collector reports
it, so "no series" can be told apart from "not loaded yet".

The cache is written on the event loop and read from the scrape thread: a lock guards
each mutation and each snapshot (both O(documents of one kind), nothing slower inside).

The informer lists only the kinds the collectors read (``collector.COLLECTED_KINDS``: not
Secrets, whose opened values would be kept for nothing). In kukeond the API server's watch
cache (``apiserver.watchcache``) already holds all of them: the collectors read them from it
(``SharedView``) and this informer has nothing left to list or watch, so one copy of each
document is kept and one watch per kind decodes it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from kukeon.api import Kind, Resource, key_of
from kukeon.framework.aiotasks import SupervisedTask, Supervisor
from kukeon.retrying import Backoff
from kukeon.store import EtcdAway, Gone, ResourceList, StoreError, WatchEvent
from kukeon.store.health import StoreHealth, health_of, pause

log = logging.getLogger(__name__)

AnyResource = Resource[Any, Any]
METRICS = "metrics"
"""The supervisor component of the informer's loops."""
ObjectKey = tuple[str, ...]


class DocumentSource(Protocol):
    """The slice of ``kukeon.store.Registry`` an informer reads."""

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList: ...

    def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]: ...


class DocumentView(Protocol):
    """What the collectors read: a kind's documents and whether its first list is in."""

    def documents(self, kind: Kind) -> list[AnyResource]: ...

    def synced(self, kind: Kind) -> bool: ...


class DocumentCache:
    """The last known version of every document, by kind and key; safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[Kind, dict[ObjectKey, AnyResource]] = {kind: {} for kind in Kind}
        self._synced: dict[Kind, bool] = dict.fromkeys(Kind, False)

    def replace(self, kind: Kind, documents: Iterable[AnyResource], revision: int = 0) -> None:
        """Make ``documents`` the whole content of ``kind`` (after a list) and mark it synced.

        ``revision`` is the list's (a subclass, the API server's watch cache, keeps it).
        """
        fresh = {key_of(document): document for document in documents}
        with self._lock:
            self._documents[kind] = fresh
            self._synced[kind] = True

    def apply(self, event: WatchEvent) -> None:
        """Apply one watch event; an older version never replaces a newer one."""
        document = event.object
        kind = Kind(document.kind)
        key = key_of(document)
        with self._lock:
            documents = self._documents[kind]
            if event.type == "DELETED":
                documents.pop(key, None)
                return
            current = documents.get(key)
            if current is not None and _revision(current) > event.revision:
                return
            documents[key] = document

    def documents(self, kind: Kind) -> list[AnyResource]:
        """A snapshot of ``kind``'s documents (a new list; the documents are never mutated)."""
        with self._lock:
            return list(self._documents[kind].values())

    def synced(self, kind: Kind) -> bool:
        with self._lock:
            return self._synced[kind]

    def __len__(self) -> int:
        with self._lock:
            return sum(len(documents) for documents in self._documents.values())


class SharedView:
    """Each kind read from the cache that holds it: ``shared`` (another informer's, as the API
    server's watch cache) for ``shared_kinds``, ``own`` for every other kind."""

    def __init__(
        self, *, own: DocumentView, shared: DocumentView, shared_kinds: Collection[Kind]
    ) -> None:
        self._own = own
        self._shared = shared
        self._shared_kinds = frozenset(shared_kinds)

    def _holder(self, kind: Kind) -> DocumentView:
        return self._shared if kind in self._shared_kinds else self._own

    def documents(self, kind: Kind) -> list[AnyResource]:
        return self._holder(kind).documents(kind)

    def synced(self, kind: Kind) -> bool:
        return self._holder(kind).synced(kind)


def _revision(document: AnyResource) -> int:
    try:
        return int(document.metadata.resource_version or 0)
    except ValueError:
        return 0


class DocumentInformer:
    """Keeps a ``DocumentCache`` equal to the store: one list + watch task per kind.

    ``await start()`` launches the tasks and returns at once; ``wait_synced()`` waits for
    every kind's first list; ``await stop()`` cancels the tasks and waits for them. Also an
    async context manager (start on enter, stop on exit).
    """

    def __init__(
        self,
        *,
        store: DocumentSource,
        cache: DocumentCache,
        kinds: Sequence[Kind] = tuple(Kind),
        retry_initial: float = 0.2,
        retry_max: float = 10.0,
        supervisor: Supervisor | None = None,
        health: StoreHealth | None = None,
    ) -> None:
        """``health``: the etcd client's (``store``'s own when omitted), so a kind backed off
        during an outage lists and watches again as soon as etcd answers."""
        self._store = store
        self._health = health if health is not None else health_of(store)
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self.cache = cache
        self._kinds = tuple(kinds)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._tasks: list[SupervisedTask] = []
        self._synced = {kind: asyncio.Event() for kind in self._kinds}

    @property
    def running(self) -> bool:
        return any(not task.task.done() for task in self._tasks)

    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            self._supervisor.start(
                f"kukeon-metrics-informer {kind.value}",
                functools.partial(self._follow, kind),
                component=METRICS,
            )
            for kind in self._kinds
        ]

    async def wait_synced(self) -> None:
        """Wait until every kind has been listed once (wrap it in ``asyncio.timeout``)."""
        for event in self._synced.values():
            await event.wait()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await self._supervisor.stop(tasks)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _follow(self, kind: Kind) -> None:
        revision: int | None = None
        backoff = Backoff(self._retry_initial, self._retry_max, jitter=0.5)
        while True:
            try:
                if revision is None:
                    listing = await self._store.list(kind)
                    self.cache.replace(kind, listing.items, listing.resource_version)
                    self._synced[kind].set()
                    revision = listing.resource_version
                async for event in self._store.watch(kind, resource_version=revision):
                    self.cache.apply(event)
                    revision = event.revision
                    backoff.reset()
                log.debug("metrics cache: watch of %s ended; resuming", kind.value)
            except Gone as error:
                log.info("metrics cache: %s %s; relisting", kind.value, error)
                revision = None
                continue
            except StoreError as error:
                # etcd known away is said once by the store, not again by each kind's watch.
                level = logging.DEBUG if isinstance(error, EtcdAway) else logging.WARNING
                log.log(
                    level,
                    "metrics cache: list/watch of %s failed: %s; retrying in %.1fs",
                    kind.value,
                    error,
                    backoff.current,
                )
            await pause(self._health, backoff.next())
