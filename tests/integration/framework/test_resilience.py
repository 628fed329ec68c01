"""etcd restarting under a running operator, graceful shutdown, timers, watch metrics."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import Kind, Realm, RealmState
from kukeon.framework import HandlerContext, Operator, OperatorRunner
from kukeon.store import EmbeddedEtcd, Registry, StoreError
from tests.fixtures.services import require_binary

from .helpers import fast_settings, new_realm, sample, with_labels

pytestmark = pytest.mark.integration


@pytest.fixture
async def own_etcd() -> AsyncIterator[EmbeddedEtcd]:
    """A private etcd this test may stop and start (the session one is shared)."""
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukeon-framework-etcd-", dir="/dev/shm"))
    etcd = EmbeddedEtcd(data_dir=root, binary=binary, auto_compaction_retention=None)
    try:
        await etcd.start()
        yield etcd
    finally:
        await etcd.kill()
        shutil.rmtree(root, ignore_errors=True)


async def test_no_event_is_lost_when_etcd_restarts_mid_stream(own_etcd: EmbeddedEtcd) -> None:
    registry = await Registry.connect(own_etcd.config(retry_timeout=30))
    try:
        metrics = CollectorRegistry()
        op = Operator(registry, settings=fast_settings(), collector_registry=metrics, peering=False)
        handled: dict[str, str] = {}

        @op.reconcile(Kind.REALM)
        async def handle(realm: Realm, ctx: HandlerContext) -> None:
            await asyncio.sleep(0.005)
            handled[realm.metadata.name] = realm.metadata.labels["n"]

        names = [f"r{index:02d}" for index in range(20)]
        for name in names:
            await registry.create(new_realm(name, n="0"))
        writing = True

        async def writer() -> None:
            counter = 0
            while writing:
                name = random.choice(names)
                counter += 1
                try:
                    current = await registry.get(Kind.REALM, (name,))
                    await registry.update(with_labels(current, n=str(counter)))
                except StoreError:
                    await asyncio.sleep(0.05)

        async with OperatorRunner(op) as runner:
            task = asyncio.create_task(writer())
            try:
                await asyncio.sleep(1.0)
                await own_etcd.stop()
                await asyncio.sleep(1.0)
                await own_etcd.start()
                await asyncio.sleep(1.0)
            finally:
                writing = False
                with contextlib.suppress(StoreError):
                    await task
            final = {
                r.metadata.name: r.metadata.labels["n"]
                for r in (await registry.list(Kind.REALM)).items
            }
            await runner.wait_for(lambda: handled == final, within=30)
            await runner.wait_idle()
        assert handled == final
        assert any(value != "0" for value in final.values())
    finally:
        await registry.close()


async def test_shutdown_lets_a_running_handler_finish_its_status(registry: Registry) -> None:
    op = Operator(
        registry,
        settings=fast_settings(shutdown_grace=3.0),
        collector_registry=CollectorRegistry(),
        peering=False,
    )
    started = asyncio.Event()
    shutdown_ran: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        started.set()
        await asyncio.sleep(0.5)
        await ctx.patch_status(realm, state=RealmState.READY)

    @op.on_shutdown
    async def goodbye(ctx: object) -> None:
        shutdown_ran.append("bye")

    await registry.create(new_realm("slow"))
    async with OperatorRunner(op):
        await asyncio.wait_for(started.wait(), 10)
    stored = await registry.get(Kind.REALM, ("slow",))
    assert stored.status.state == RealmState.READY
    assert shutdown_ran == ["bye"]


async def test_shutdown_cancels_handlers_after_the_grace_period(registry: Registry) -> None:
    metrics = CollectorRegistry()
    op = Operator(
        registry,
        settings=fast_settings(shutdown_grace=0.3),
        collector_registry=metrics,
        peering=False,
    )
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await registry.create(new_realm("stuck"))
    loop = asyncio.get_running_loop()
    async with OperatorRunner(op):
        await asyncio.wait_for(started.wait(), 10)
        stopping_at = loop.time()
    assert loop.time() - stopping_at < 2.0
    assert cancelled.is_set()
    assert sample(metrics, "kukeon_reconcile_total", kind="Realm", result="cancelled") == 1
    stored = await registry.get(Kind.REALM, ("stuck",))
    assert stored.status.state == RealmState.PENDING


async def test_timers_run_per_object_and_never_beside_reconcile(registry: Registry) -> None:
    op = Operator(
        registry, settings=fast_settings(), collector_registry=CollectorRegistry(), peering=False
    )
    ticks: dict[str, int] = {}
    busy: set[str] = set()
    overlaps: list[str] = []

    async def exclusive(name: str) -> None:
        if name in busy:
            overlaps.append(name)
        busy.add(name)
        await asyncio.sleep(0.02)
        busy.discard(name)

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        await exclusive(realm.metadata.name)

    @op.timer(Kind.REALM, 0.1, when=lambda realm: realm.metadata.labels.get("watch") == "yes")
    async def check(realm: Realm, ctx: HandlerContext) -> None:
        ticks[realm.metadata.name] = ticks.get(realm.metadata.name, 0) + 1
        await exclusive(realm.metadata.name)

    current = await registry.create(new_realm("ticking", watch="yes"))
    await registry.create(new_realm("silent", watch="no"))
    async with OperatorRunner(op) as runner:
        for n in range(10):
            current = await registry.update(with_labels(current, n=str(n)))
            await asyncio.sleep(0.03)
        await runner.wait_for(lambda: ticks.get("ticking", 0) >= 3, within=10)
    assert "silent" not in ticks
    assert overlaps == []


async def test_startup_handlers_run_before_watching(registry: Registry) -> None:
    op = Operator(
        registry, settings=fast_settings(), collector_registry=CollectorRegistry(), peering=False
    )
    order: list[str] = []

    @op.on_startup
    async def prepare(ctx: object) -> None:
        order.append("startup")

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        order.append(realm.metadata.name)

    await registry.create(new_realm("first"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(order) == 2)
    assert order == ["startup", "first"]
