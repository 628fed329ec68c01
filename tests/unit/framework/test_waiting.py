"""Waiting on another object: its change wakes the waiter (no poll), the watched objects
are readable from the handler's context, and change listeners follow the operator's watch."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import Kind, Realm
from kukeon.framework import (
    HandlerContext,
    Operator,
    OperatorError,
    OperatorRunner,
    TemporaryError,
    WaitingError,
)
from kukeon.framework.cache import revision_of
from kukeon.framework.errors import Awaited

from .fakes import AnyResource, FakeStore, realm, relabel
from .test_operator import settings

LONG = 30.0
"""A retry delay no test waits for: only a wake-up can make these tests pass in time."""


def operator(store: FakeStore) -> Operator:
    return Operator(
        store, settings=settings(), collector_registry=CollectorRegistry(), peering=False
    )


def waiting_on_a(op: Operator, runs: list[str], *, gate: asyncio.Event | None = None) -> None:
    """Realm ``b`` waits until realm ``a`` is labelled ready (read from the cache)."""

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        if obj.metadata.name != "b":
            return
        assert ctx.cache is not None
        assert ctx.cache.covers(Kind.REALM)
        parent = ctx.cache.get(Kind.REALM, ("a",))
        runs.append("ready" if parent and parent.metadata.labels.get("ready") else "waiting")
        if gate is not None:
            await gate.wait()
        if parent is None or not parent.metadata.labels.get("ready"):
            raise WaitingError(
                "waiting for a", delay=LONG, on=Awaited(Kind.REALM, ("a",), revision_of(parent))
            )


async def test_the_awaited_objects_change_wakes_the_waiter_at_once() -> None:
    store = FakeStore()
    op = operator(store)
    runs: list[str] = []
    waiting_on_a(op, runs)
    await store.create(realm("b"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: runs == ["waiting"])
        started = time.monotonic()
        parent = await store.create(realm("a"))  # created: b runs again, still waits
        await runner.wait_for(lambda: runs == ["waiting", "waiting"])
        await store.update(relabel(parent, ready="yes"))
        await runner.wait_for(lambda: runs[-1] == "ready")
        assert time.monotonic() - started < LONG / 10
        await runner.wait_idle()
    assert runs == ["waiting", "waiting", "ready"]


async def test_a_change_while_the_waiter_ran_wakes_it_when_it_settles() -> None:
    store = FakeStore()
    op = operator(store)
    runs: list[str] = []
    gate = asyncio.Event()
    waiting_on_a(op, runs, gate=gate)
    parent = await store.create(realm("a"))
    await store.create(realm("b"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: runs == ["waiting"])
        ready = await store.update(relabel(parent, ready="yes"))
        cache = op.cache
        assert cache is not None
        await runner.wait_for(
            lambda: revision_of(cache.get(Kind.REALM, ("a",))) == revision_of(ready)
        )
        gate.set()  # b now fails with the revision it read, older than the cache's
        await runner.wait_for(lambda: runs[-1] == "ready", within=LONG / 6)
        await runner.wait_idle()


async def test_an_unwatched_kind_is_not_covered_and_only_its_delay_wakes() -> None:
    store = FakeStore()
    op = operator(store)
    runs: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        assert ctx.cache is not None
        assert not ctx.cache.covers(Kind.SPACE)
        runs.append("run")
        raise WaitingError("a space", delay=0.05, on=Awaited(Kind.SPACE, ("r", "s"), 7))

    await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(runs) >= 3)  # polled, not spinning nor stuck


async def test_change_listeners_see_new_versions_and_deletions_once() -> None:
    store = FakeStore()
    op = operator(store)
    seen: list[tuple[str, str, bool]] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        return None

    def listener(obj: AnyResource, deleted: bool) -> None:
        seen.append((obj.metadata.name, obj.metadata.labels.get("n", "-"), deleted))

    op.on_change(Kind.REALM, listener)
    current = await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: seen == [("r", "-", False)])
        current = await store.update(relabel(current, n="1"))
        await runner.wait_for(lambda: len(seen) == 2)
        assert op.trigger(Kind.REALM, ("r",))  # the same version again: no change
        op.resync()
        await store.delete(Kind.REALM, ("r",))
        await runner.wait_for(lambda: seen[-1][2])
        await runner.wait_idle()
    # Without finalizers the deletion removes the object: its last version is handed over.
    assert seen == [("r", "-", False), ("r", "1", False), ("r", "1", True)]


async def test_a_listener_on_an_unwatched_kind_is_refused_at_start() -> None:
    op = operator(FakeStore())

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        return None

    op.on_change(Kind.SECRET, lambda obj, deleted: None)
    with pytest.raises(OperatorError, match="no handler watches"):
        await op.start()


async def test_the_awaited_objects_deletion_wakes_the_waiter() -> None:
    store = FakeStore()
    op = operator(store)
    runs: list[str] = []
    waiting_on_a(op, runs)
    await store.create(realm("a"))
    await store.create(realm("b"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: runs == ["waiting"])
        await store.delete(Kind.REALM, ("a",))
        # Woken (it now waits for a's creation), long before its retry delay.
        await runner.wait_for(lambda: len(runs) == 2, within=LONG / 6)


async def test_waits_do_not_grow_the_backoff_of_the_failure_after_them() -> None:
    """Twenty waits for a parent, then one real failure: retried after the first backoff
    step, not after the cap (CI saw a cell wait 5 minutes after a brief containerd outage)."""
    store = FakeStore()
    op = Operator(
        store,
        settings=settings(backoff_initial=0.01, backoff_max=LONG),
        collector_registry=CollectorRegistry(),
        peering=False,
    )
    runs: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        runs.append("run")
        if len(runs) <= 20:
            raise WaitingError("the parent", delay=0.001)
        if len(runs) == 21:
            raise TemporaryError("containerd is unavailable")

    await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(runs) == 22, within=LONG / 6)
        await runner.wait_idle()
        assert op._queues is not None
        assert op._queues.failures(Kind.REALM, ("r",)) == 0


async def test_deleted_waiters_leave_the_awaited_objects_list() -> None:
    """Objects that waited on one that never changes, then were deleted, are not kept in
    its list of waiters (under churn: every deleted cell that once waited on its space)."""
    store = FakeStore()
    op = operator(store)
    runs: list[str] = []
    awaited = (Kind.REALM, ("a",))

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        if obj.metadata.name == "a":
            return
        runs.append(obj.metadata.name)
        assert ctx.cache is not None
        parent = ctx.cache.get(Kind.REALM, ("a",))
        raise WaitingError(
            "waiting for a", delay=LONG, on=Awaited(Kind.REALM, ("a",), revision_of(parent))
        )

    await store.create(realm("a"))  # never changes: its waiters wait for good
    async with OperatorRunner(op) as runner:
        queues = op._queues
        assert queues is not None
        for batch in range(3):
            names = [f"b{batch}-{n}" for n in range(50)]
            for name in names:
                await store.create(realm(name))
            await runner.wait_for(lambda: len(queues._waiters.get(awaited, ())) == 50)
            for name in names:
                await store.delete(Kind.REALM, (name,))
            await runner.wait_for(lambda: queues.known(Kind.REALM) == [("a",)])
            await runner.wait_idle()
            assert queues._waiters == {}
