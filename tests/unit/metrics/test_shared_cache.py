"""kukeond's collectors read the API server's watch cache: one list + watch, one copy."""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import CollectorRegistry

from kukeon.api import Kind
from kukeon.apiserver.watchcache import CACHED_KINDS
from kukeon.metrics.cache import DocumentCache, SharedView
from kukeon.metrics.collector import COLLECTED_KINDS
from kukeon.metrics.daemon import DaemonMetrics
from tests.unit.apiserver.test_watchcache import ScriptedRegistry, started
from tests.unit.metrics.test_cache import FakeStore, _until


async def test_the_watch_cache_answers_the_collectors_for_its_kinds() -> None:
    registry = ScriptedRegistry()
    registry.write("a")
    cache = await started(registry)
    try:
        assert [r.metadata.name for r in cache.documents(Kind.REALM)] == ["a"]
        assert cache.synced(Kind.REALM)
        assert not cache.synced(Kind.SECRET)  # not cached: the metrics' own informer's
        assert cache.documents(Kind.SECRET) == []
        registry.pushed.put_nowait(registry.write("b"))
        await _until(lambda: len(cache.documents(Kind.REALM)) == 2)
    finally:
        await cache.stop()
    assert not cache.synced(Kind.REALM)


async def test_a_relist_is_swapped_in_whole_for_a_reader_on_another_thread() -> None:
    registry = ScriptedRegistry()
    for index in range(300):
        registry.write(f"r{index}")
    cache = await started(registry)
    seen: set[int] = set()
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            seen.add(len(cache.documents(Kind.REALM)))

    reader = threading.Thread(target=scrape)
    reader.start()
    try:
        listing = list(registry.realms.values())
        for _ in range(50):
            cache.replace(Kind.REALM, listing, registry.revision)
            await asyncio.sleep(0)
    finally:
        done.set()
        reader.join()
        await cache.stop()
    assert seen == {300}  # never a half-filled kind


async def test_daemon_metrics_watch_only_what_the_shared_cache_lacks() -> None:
    store = FakeStore()
    shared = DocumentCache()
    metrics = DaemonMetrics(
        registry=CollectorRegistry(),
        store=store,
        node_name="n1",
        process_metrics=False,
        shared=shared,
        shared_kinds=CACHED_KINDS,
    )
    assert isinstance(metrics.cache, SharedView)
    async with metrics:
        async with asyncio.timeout(5):
            await metrics.informer.wait_synced()
    own = {kind for kind, calls in store.list_calls.items() if calls}
    # Everything the collectors read is in the API server's cache: nothing of its own to
    # list, and never the Secrets (their opened values would sit in memory for nothing).
    assert set(COLLECTED_KINDS) <= set(CACHED_KINDS)
    assert own == set()
    shared.replace(Kind.CELL, [])
    assert metrics.cache.synced(Kind.CELL)  # read from the shared cache


async def test_daemon_metrics_without_a_shared_cache_watch_what_they_read() -> None:
    store = FakeStore()
    metrics = DaemonMetrics(
        registry=CollectorRegistry(), store=store, node_name="n1", process_metrics=False
    )
    async with metrics:
        async with asyncio.timeout(5):
            await metrics.informer.wait_synced()
    assert {kind for kind, calls in store.list_calls.items() if calls} == set(COLLECTED_KINDS)
    assert all(store.list_calls[kind] == 1 for kind in COLLECTED_KINDS)
    assert Kind.SECRET not in store.list_calls or not store.list_calls[Kind.SECRET]
