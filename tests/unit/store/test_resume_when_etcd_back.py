"""A watch backed off during an outage resumes as soon as etcd answers, not a cap later.

The per-kind watch (``framework.watching``, backing off up to ``watch_retry_max``, 30 s)
and the metrics cache's informer (up to 10 s) slept their whole backoff before; now
their wait ends when the etcd client's ``StoreHealth`` sees etcd back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import Kind
from kukeon.framework import Supervisor, metrics_for
from kukeon.framework.intents import HandlerRegistry
from kukeon.framework.processing import Processor
from kukeon.framework.queueing import ObjectQueues
from kukeon.framework.settings import Settings
from kukeon.framework.watching import KindWatcher
from kukeon.metrics import DocumentCache, DocumentInformer
from kukeon.store import EtcdAway, ResourceList, WatchEvent
from kukeon.store.health import StoreHealth, health_of
from tests.unit.framework.fakes import FakeStore

LONG_BACKOFF = 30.0


def _away() -> EtcdAway:
    return EtcdAway("etcd is unavailable", retry_after_seconds=1)


async def _until(predicate: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.005)


async def _away_health() -> StoreHealth:
    async def probe() -> bool:
        return False  # etcd does not answer until the test says it is back

    health = StoreHealth(probe)
    health.failed("connection refused")
    return health


async def _resumes_when_back(health: StoreHealth, watches: Callable[[], int]) -> None:
    """One watch failed while etcd is away: no other within the backoff; one at once
    after etcd answers."""
    await asyncio.sleep(0.2)
    assert watches() == 1, "backed off: no attempt while etcd is away"
    health.answered()
    await _until(lambda: watches() == 2, within=1.0)


async def test_a_kind_watch_backed_off_resumes_when_etcd_answers() -> None:
    store = FakeStore()
    settings = Settings(watch_retry_initial=LONG_BACKOFF, watch_retry_max=LONG_BACKOFF)
    metrics = metrics_for(CollectorRegistry())
    handlers = HandlerRegistry()
    processor = Processor(store=store, handlers=handlers, settings=settings, metrics=metrics)
    queues = ObjectQueues(
        processor=processor, handlers=handlers, settings=settings, metrics=metrics
    )
    health = await _away_health()
    watcher = KindWatcher(
        kind=Kind.REALM,
        store=store,
        queues=queues,
        settings=settings,
        metrics=metrics,
        health=health,
    )
    task = asyncio.create_task(watcher.run())
    try:
        await _until(lambda: len(store.watch_starts) == 1, within=2.0)
        store.break_watches(_away())
        await _resumes_when_back(health, lambda: len(store.watch_starts))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await health.close()


class _FailingOnceStore:
    """Lists nothing; the first watch fails with etcd away, later ones stay open."""

    def __init__(self) -> None:
        self.watches = 0

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList:
        return ResourceList([], 1)

    async def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]:
        self.watches += 1
        if self.watches == 1:
            raise _away()
        await asyncio.Event().wait()  # then open and quiet
        return
        yield  # makes this an async generator


async def test_the_metrics_informer_backed_off_resumes_when_etcd_answers() -> None:
    store = _FailingOnceStore()
    health = await _away_health()
    informer = DocumentInformer(
        store=store,
        cache=DocumentCache(),
        kinds=[Kind.CELL],
        retry_initial=LONG_BACKOFF,
        retry_max=LONG_BACKOFF,
        supervisor=Supervisor(),
        health=health,
    )
    try:
        async with informer:
            await _until(lambda: store.watches == 1, within=2.0)
            await _resumes_when_back(health, lambda: store.watches)
    finally:
        await health.close()


@pytest.mark.parametrize("store", [object(), FakeStore()])
def test_a_store_without_an_etcd_client_has_no_health(store: object) -> None:
    assert health_of(store) is None


def test_a_registry_gives_its_clients_health() -> None:
    class Client:
        health = StoreHealth(_never_probed)

    class Registry:
        client = Client()

    assert health_of(Registry()) is Client.health


async def _never_probed() -> bool:
    raise AssertionError("not probed")
