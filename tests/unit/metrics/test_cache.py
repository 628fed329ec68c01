"""The informer keeps the document cache equal to the store: list, watch, relist, resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from prometheus_client import CollectorRegistry

from kukeon.api import Kind
from kukeon.framework import Supervisor, metrics_for
from kukeon.metrics import DocumentCache, DocumentInformer
from kukeon.store import Gone, ResourceList, Unavailable, WatchEvent
from kukeon.store.registry import AnyResource
from tests.unit.metrics import documents as docs


class FakeStore:
    """Lists what ``listings`` says; each watch call plays the next script of events/errors."""

    def __init__(self) -> None:
        self.listings: dict[Kind, list[ResourceList]] = {}
        self.scripts: dict[Kind, list[list[WatchEvent | Exception]]] = {}
        self.list_calls: dict[Kind, int] = dict.fromkeys(Kind, 0)
        self.watched_from: dict[Kind, list[int]] = {kind: [] for kind in Kind}

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList:
        self.list_calls[kind] += 1
        pending = self.listings.get(kind, [])
        return (
            pending.pop(0) if len(pending) > 1 else (pending[0] if pending else ResourceList([], 1))
        )

    async def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]:
        self.watched_from[kind].append(resource_version)
        script = self.scripts.get(kind, [])
        steps = script.pop(0) if script else []
        for step in steps:
            if isinstance(step, Exception):
                raise step
            yield step
        await asyncio.Event().wait()  # then idle, like a quiet watch


async def _until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)


def _cells(cache: DocumentCache) -> set[str]:
    return {cell.metadata.name for cell in cache.documents(Kind.CELL)}


async def test_list_then_watch_events_are_applied() -> None:
    store = FakeStore()
    store.listings[Kind.CELL] = [ResourceList([docs.cell("r", "s", "k", "a")], 10)]
    changed = docs.cell("r", "s", "k", "a", state="Failed", revision=12)
    store.scripts[Kind.CELL] = [
        [
            WatchEvent("ADDED", docs.cell("r", "s", "k", "b", revision=11), 11),
            WatchEvent("MODIFIED", changed, 12),
            WatchEvent("DELETED", docs.cell("r", "s", "k", "b", revision=13), 13),
        ]
    ]
    cache = DocumentCache()
    async with DocumentInformer(store=store, cache=cache) as informer:
        async with asyncio.timeout(5):
            await informer.wait_synced()
        await _until(
            lambda: (
                len(store.watched_from[Kind.CELL]) == 1
                and _cells(cache) == {"a"}
                and cache.documents(Kind.CELL)[0].status.state == "Failed"
            )
        )
        assert store.watched_from[Kind.CELL] == [10]
        assert cache.synced(Kind.REALM)
    assert not informer.running


async def test_gone_relists_and_drops_what_vanished_meanwhile() -> None:
    store = FakeStore()
    store.listings[Kind.CELL] = [
        ResourceList([docs.cell("r", "s", "k", "a"), docs.cell("r", "s", "k", "b")], 10),
        ResourceList([docs.cell("r", "s", "k", "b", revision=30)], 30),
    ]
    store.scripts[Kind.CELL] = [[Gone("compacted", compacted_revision=20)]]
    cache = DocumentCache()
    async with DocumentInformer(store=store, cache=cache, retry_initial=0.01):
        await _until(lambda: store.list_calls[Kind.CELL] == 2 and _cells(cache) == {"b"})
        await _until(lambda: store.watched_from[Kind.CELL] == [10, 30])


async def test_unavailable_resumes_from_the_last_revision_without_relisting() -> None:
    store = FakeStore()
    store.listings[Kind.CELL] = [ResourceList([], 10)]
    store.scripts[Kind.CELL] = [
        [
            WatchEvent("ADDED", docs.cell("r", "s", "k", "a", revision=15), 15),
            Unavailable("etcd away"),
        ],
    ]
    cache = DocumentCache()
    async with DocumentInformer(store=store, cache=cache, retry_initial=0.01):
        await _until(lambda: store.watched_from[Kind.CELL] == [10, 15])
        assert store.list_calls[Kind.CELL] == 1
        assert _cells(cache) == {"a"}


async def test_a_failing_first_list_is_retried() -> None:
    store = FakeStore()
    calls = 0
    original = store.list

    async def flaky(
        kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList:
        nonlocal calls
        if kind is Kind.CELL:
            calls += 1
            if calls == 1:
                raise Unavailable("not yet")
        return await original(kind, scope, label_selector=label_selector)

    store.list = flaky  # type: ignore[method-assign]
    store.listings[Kind.CELL] = [ResourceList([docs.cell("r", "s", "k", "a")], 3)]
    cache = DocumentCache()
    async with DocumentInformer(store=store, cache=cache, retry_initial=0.01) as informer:
        async with asyncio.timeout(5):
            await informer.wait_synced()
        assert _cells(cache) == {"a"}
        assert calls == 2


def test_an_older_event_never_replaces_a_newer_document() -> None:
    cache = DocumentCache()
    cache.replace(Kind.CELL, [docs.cell("r", "s", "k", "a", state="Failed", revision=20)])
    stale: AnyResource = docs.cell("r", "s", "k", "a", state="Ready", revision=19)
    cache.apply(WatchEvent("MODIFIED", stale, 19))
    assert cache.documents(Kind.CELL)[0].status.state == "Failed"
    assert len(cache) == 1


async def test_a_bug_in_the_loop_is_restarted_by_the_supervisor_and_relists() -> None:
    store = FakeStore()
    store.listings[Kind.CELL] = [
        ResourceList([docs.cell("r", "s", "k", "a")], 10),
        ResourceList([docs.cell("r", "s", "k", "b", revision=20)], 20),
    ]
    store.scripts[Kind.CELL] = [[RuntimeError("a bug while applying an event")]]
    registry = CollectorRegistry()
    supervisor = Supervisor(metrics=metrics_for(registry), backoff_initial=0.01)
    cache = DocumentCache()
    async with DocumentInformer(store=store, cache=cache, supervisor=supervisor):
        await _until(lambda: store.list_calls[Kind.CELL] == 2 and _cells(cache) == {"b"})
        await _until(lambda: store.watched_from[Kind.CELL] == [10, 20])
    task = "kukeon-metrics-informer Cell"
    assert registry.get_sample_value("kukeon_task_restarts_total", {"task": task}) == 1
    assert supervisor.tasks == []  # stopped with the informer, never restarted after
