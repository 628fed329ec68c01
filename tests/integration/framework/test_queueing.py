"""Coalescing, serialization, retries with backoff and permanent errors, on a real etcd."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import Kind, Realm, RealmState
from kukeon.framework import (
    HandlerContext,
    Operator,
    OperatorRunner,
    PermanentError,
    TemporaryError,
    base_delay,
)
from kukeon.store import Registry

from .helpers import fast_settings, new_realm, sample, with_labels

pytestmark = pytest.mark.integration


async def test_a_burst_of_updates_coalesces_into_few_serialized_calls(registry: Registry) -> None:
    metrics = CollectorRegistry()
    op = Operator(registry, settings=fast_settings(), collector_registry=metrics, peering=False)
    seen: list[str] = []
    running = 0
    most_at_once = 0

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        seen.append(realm.metadata.labels.get("n", ""))
        await asyncio.sleep(0.1)
        running -= 1

    current = await registry.create(new_realm("burst", n="start"))
    async with OperatorRunner(op) as runner:
        for n in range(1000):
            current = await registry.update(with_labels(current, n=str(n)))
        await runner.wait_for(lambda: bool(seen) and seen[-1] == "999", within=30)
        await runner.wait_idle()

    assert most_at_once == 1
    assert seen[-1] == "999"
    assert seen.count("999") == 1
    # One call per ~100 ms of writing, not one per write.
    assert len(seen) < 200, len(seen)
    assert sample(metrics, "kukeon_reconcile_total", kind="Realm", result="success") == len(seen)


async def test_objects_that_fail_twice_converge_with_backoff(registry: Registry) -> None:
    metrics = CollectorRegistry()
    settings = fast_settings(max_workers=32)
    op = Operator(registry, settings=settings, collector_registry=metrics, peering=False)
    calls: dict[str, list[float]] = defaultdict(list)
    retries_seen: dict[str, list[int]] = defaultdict(list)

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        name = realm.metadata.name
        calls[name].append(time.monotonic())
        retries_seen[name].append(ctx.retry)
        if len(calls[name]) == 1:
            raise TemporaryError("host not ready yet", reason="HostNotReady")
        if len(calls[name]) == 2:
            raise RuntimeError("boom")
        await ctx.patch_status(realm, state=RealmState.READY, reason=None, message=None)

    names = [f"r{index:03d}" for index in range(200)]
    await asyncio.gather(*(registry.create(new_realm(name)) for name in names))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: all(len(calls[n]) >= 3 for n in names), within=60)
        await runner.wait_idle()
        assert op.queue_depth(Kind.REALM) == 0
        assert sample(metrics, "kukeon_queue_depth", kind="Realm") == 0

    jitter = settings.backoff_jitter
    for name in names:
        times = calls[name]
        assert len(times) == 3, (name, len(times))
        assert retries_seen[name] == [0, 1, 2]
        first_wait, second_wait = times[1] - times[0], times[2] - times[1]
        assert first_wait >= base_delay(1, settings=settings) * (1 - jitter) - 0.01
        assert second_wait >= base_delay(2, settings=settings) * (1 - jitter) - 0.01
        # No upper bound on a wait: with backoff_max 1 s it would say nothing of the
        # backoff, only how long a retry queued behind 400 status writes took on a loaded
        # machine (6.2 s seen on 2 cores under two test workers); the convergence above
        # within 60 s is what says retries come.
    listing = await registry.list(Kind.REALM)
    assert {r.status.state for r in listing.items} == {RealmState.READY}
    assert all(r.status.observed_generation == 1 for r in listing.items)
    assert sample(metrics, "kukeon_reconcile_retries_total", kind="Realm") == 400
    assert sample(metrics, "kukeon_reconcile_total", kind="Realm", result="temporary_error") == 200
    assert sample(metrics, "kukeon_reconcile_total", kind="Realm", result="error") == 200


async def test_a_failure_is_recorded_in_status(registry: Registry) -> None:
    op = Operator(
        registry,
        settings=fast_settings(backoff_initial=5.0, backoff_max=5.0),
        collector_registry=CollectorRegistry(),
        peering=False,
    )

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        raise TemporaryError("containerd is not answering", reason="RuntimeUnavailable")

    await registry.create(new_realm("failing"))
    async with OperatorRunner(op) as runner:

        async def recorded() -> bool:
            stored = await registry.get(Kind.REALM, ("failing",))
            assert isinstance(stored, Realm)
            return stored.status.reason == "RuntimeUnavailable"

        await runner.wait_for(recorded, within=10)
    stored = await registry.get(Kind.REALM, ("failing",))
    assert stored.status.message == "containerd is not answering"
    assert stored.status.observed_generation == 0


async def test_a_permanent_error_waits_for_the_object_to_change(registry: Registry) -> None:
    op = Operator(
        registry, settings=fast_settings(), collector_registry=CollectorRegistry(), peering=False
    )
    versions: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        versions.append(realm.metadata.labels.get("v", ""))
        if realm.metadata.labels.get("v") == "bad":
            raise PermanentError("spec.namespace is taken", reason="NamespaceTaken")

    await registry.create(new_realm("perm", v="bad"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: versions == ["bad"])
        await runner.wait_idle()
        # The failure's own status write and a resync do not bring it back.
        op.resync()
        await asyncio.sleep(0.5)
        await runner.wait_idle()
        assert versions == ["bad"]
        stored = await registry.get(Kind.REALM, ("perm",))
        assert stored.status.reason == "NamespaceTaken"
        await registry.update(with_labels(stored, v="good"))
        await runner.wait_for(lambda: versions == ["bad", "good"])


async def test_status_only_writes_do_not_retrigger(registry: Registry) -> None:
    op = Operator(
        registry, settings=fast_settings(), collector_registry=CollectorRegistry(), peering=False
    )
    calls = 0

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1
        await ctx.patch_status(realm, state=RealmState.READY, message=f"call {calls}")

    await registry.create(new_realm("quiet"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: calls == 1)
        await asyncio.sleep(0.5)
        await runner.wait_idle()
    assert calls == 1
    stored = await registry.get(Kind.REALM, ("quiet",))
    assert stored.status.state == RealmState.READY
    assert stored.status.observed_generation == 1


async def test_resync_calls_unchanged_objects_again(registry: Registry) -> None:
    op = Operator(
        registry,
        settings=fast_settings(resync_interval=0.3),
        collector_registry=CollectorRegistry(),
        peering=False,
    )
    calls: list[Any] = []

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        calls.append(ctx.cause)

    await registry.create(new_realm("resynced"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(calls) >= 3, within=10)
    assert calls[0] == "change"
    assert "resync" in calls[1:]


async def test_the_next_pass_reads_the_status_the_last_one_wrote(registry: Registry) -> None:
    """A host event that requeues an object while its pass writes status (a killed task's
    exit, during a restart) runs the next pass at once, before the watch has delivered that
    write: the pass must still be given it, or it reports the status from before (its
    write then loses the CAS, re-reads, and puts the stale fields back)."""
    op = Operator(
        registry, settings=fast_settings(), collector_registry=CollectorRegistry(), peering=False
    )
    messages: list[str | None] = []

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        messages.append(realm.status.message)
        if len(messages) < 3:
            await ctx.patch_status(realm, state=RealmState.READY, message=f"pass {len(messages)}")
            op.trigger(Kind.REALM, ("own",))  # nothing awaited in between: the watch lags

    await registry.create(new_realm("own"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(messages) == 3, within=10)
        await runner.wait_idle()
    assert messages == [None, "pass 1", "pass 2"]
    stored = await registry.get(Kind.REALM, ("own",))
    assert stored.status.message == "pass 2"
