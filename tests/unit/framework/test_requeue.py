"""A planned wait (``Requeue``, a restart back-off) is no failure, and a parent's wait no error.

A Requeue runs the object again after exactly the delay it asks (not the failure backoff),
records nothing in the status, counts as ``requeued`` (not an error, no retry), is logged
at debug level only, and leaves the failure count at zero: the next real failure backs off
from its first step. A WaitingError counts as ``waiting``, apart from the errors.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from kukeon.api import Kind, Realm
from kukeon.framework import HandlerContext, OperatorRunner, Requeue, TemporaryError, WaitingError

from .fakes import FakeStore, realm
from .test_operator import operator, sample

DELAY = 0.3
"""Longer than the test settings' backoff_max (0.1): a backoff would come back sooner."""


async def test_a_requeue_runs_again_at_its_delay_records_nothing_and_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store)
    runs: list[tuple[float, int]] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        runs.append((time.monotonic(), ctx.retry))
        if len(runs) <= 3:
            raise Requeue("a restart is owed", delay=DELAY, reason="CrashLoopBackOff")
        if len(runs) == 4:
            raise TemporaryError("the host refused", reason="HostBusy")

    await store.create(realm("r"))
    with caplog.at_level(logging.DEBUG, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: len(runs) == 5, within=10)
            await runner.wait_idle()
            assert op._queues is not None
            assert op._queues.failures(Kind.REALM, ("r",)) == 0
    # Each requeue came back after its own delay, not after a growing backoff.
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(runs[:4])]
    assert all(gap >= DELAY - 0.02 for gap in gaps), gaps
    # The failure after three requeues is the first failure (retry 1), and retried once.
    assert [retry for _, retry in runs] == [0, 0, 0, 0, 1]
    assert sample(op, "kukeon_reconcile_total", kind="Realm", result="requeued") == 3
    assert sample(op, "kukeon_reconcile_total", kind="Realm", result="temporary_error") == 1
    assert sample(op, "kukeon_reconcile_retries_total", kind="Realm") == 1
    stored = await store.get(Kind.REALM, ("r",))
    assert stored.status.reason == "HostBusy"  # written by the failure, never by a requeue
    said = [r for r in caplog.records if "CrashLoopBackOff" in r.getMessage()]
    assert len(said) == 3
    assert {r.levelno for r in said} == {logging.DEBUG}


async def test_a_requeue_writes_nothing_in_the_status() -> None:
    store = FakeStore()
    op = operator(store)
    runs: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        runs.append(ctx.retry)
        if len(runs) == 1:
            raise Requeue("later", delay=0.01, reason="CrashLoopBackOff")

    created = await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(runs) == 2)
        await runner.wait_idle()
    stored = await store.get(Kind.REALM, ("r",))
    assert stored.status.reason is None
    assert stored.status.message is None
    assert stored.metadata.generation == created.metadata.generation


async def test_a_wait_for_another_object_counts_apart_from_the_errors() -> None:
    store = FakeStore()
    op = operator(store)
    runs: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        runs.append(ctx.retry)
        if len(runs) == 1:
            raise WaitingError("waiting for its parent", reason="ParentNotReady")

    await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(runs) == 2)
        await runner.wait_idle()
    assert sample(op, "kukeon_reconcile_total", kind="Realm", result="waiting") == 1
    assert sample(op, "kukeon_reconcile_total", kind="Realm", result="temporary_error") == 0
    stored = await store.get(Kind.REALM, ("r",))
    assert stored.status.reason == "ParentNotReady"  # a wait still says what it waits for


async def test_a_wait_that_goes_on_counts_no_retry_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wait is said at INFO when it starts and at debug while the same wait goes on; a
    new statement (its message changed) is said again. No retry is counted for any."""
    store = FakeStore()
    op = operator(store)
    runs: list[int] = []
    messages = ["waiting for its parent", "waiting for its parent", "waiting for its parent"]
    messages += ["waiting for its parent (Creating)", "waiting for its parent (Creating)"]

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        runs.append(ctx.retry)
        if len(runs) <= len(messages):
            raise WaitingError(messages[len(runs) - 1], delay=0.01, reason="ParentNotReady")

    await store.create(realm("r"))
    with caplog.at_level(logging.DEBUG, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: len(runs) == len(messages) + 1, within=10)
            await runner.wait_idle()
    assert sample(op, "kukeon_reconcile_total", kind="Realm", result="waiting") == 5
    assert sample(op, "kukeon_reconcile_retries_total", kind="Realm") == 0
    said = [
        r
        for r in caplog.records
        if r.name == "kukeon.framework.processing" and "ParentNotReady" in r.getMessage()
    ]
    levels = [r.levelno for r in said]
    assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG, logging.INFO, logging.DEBUG]
    scheduled = [r for r in caplog.records if r.name == "kukeon.framework.queueing"]
    assert [r.levelno for r in scheduled if "wait" in r.getMessage()] == [logging.DEBUG] * 5


async def test_a_wait_after_a_failure_or_success_is_said_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store)
    outcomes: list[Exception | None] = [
        WaitingError("waiting for its parent", delay=0.01, reason="ParentNotReady"),
        TemporaryError("the host refused", reason="HostBusy"),
        WaitingError("waiting for its parent", delay=0.01, reason="ParentNotReady"),
        None,
    ]
    runs: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        runs.append(ctx.retry)
        outcome = outcomes[len(runs) - 1] if len(runs) <= len(outcomes) else None
        if outcome is not None:
            raise outcome

    await store.create(realm("r"))
    with caplog.at_level(logging.DEBUG, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: len(runs) == len(outcomes), within=10)
            await runner.wait_idle()
    said = [
        r.levelno
        for r in caplog.records
        if r.name == "kukeon.framework.processing" and "ParentNotReady" in r.getMessage()
    ]
    assert said == [logging.INFO, logging.INFO]
    assert sample(op, "kukeon_reconcile_retries_total", kind="Realm") == 1  # the failure's


async def test_an_object_waiting_out_a_delay_is_not_in_the_queue_depth() -> None:
    """As Kubernetes' workqueue_depth, which leaves out its delaying queue: a requeue's
    or a retry's object is counted again once its delay ends, not while it waits."""
    store = FakeStore()
    op = operator(store)
    runs: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        runs.append(obj.metadata.name)
        if obj.metadata.name == "requeued":
            raise Requeue("a restart is owed", delay=30, reason="CrashLoopBackOff")
        raise TemporaryError("the host refused", delay=30, reason="HostBusy")

    await store.create(realm("requeued"))
    await store.create(realm("failing"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: sorted(runs) == ["failing", "requeued"], within=10)
        await asyncio.sleep(0.05)
        assert not op.idle()  # both come back later
        assert op.queue_depth(Kind.REALM) == 0
        assert sample(op, "kukeon_queue_depth", kind="Realm") == 0
        # A change is due at once: counted until a worker takes it.
        assert op._queues is not None
        op._queues.offer((await store.get(Kind.REALM, ("requeued",))), force=True)
        assert op.queue_depth(Kind.REALM) == 1
        assert sample(op, "kukeon_queue_depth", kind="Realm") == 1
        await runner.wait_for(lambda: len(runs) == 3, within=10)
        await asyncio.sleep(0.05)
        assert sample(op, "kukeon_queue_depth", kind="Realm") == 0


async def test_a_requeue_that_keeps_the_backoff_leaves_the_failures_counted() -> None:
    """A pass that starts an image pull beside it (a requeue keeping the backoff), whose
    failure fails the next pass: each failure is counted one further than the last, as if
    the pulls' passes were not there, so a registry that refuses at once is asked less and
    less often (with the count reset by each requeue it was asked twice a second)."""
    store = FakeStore()
    op = operator(store)
    retries: list[int] = []
    counted: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        assert op._queues is not None
        counted.append(op._queues.failures(Kind.REALM, ("r",)))
        retries.append(ctx.retry)
        if len(retries) > 6:
            return
        if len(retries) % 2:
            raise Requeue("pulling", delay=0.01, reason="ImagePulling", keeps_backoff=True)
        raise TemporaryError("the pull failed", reason="ImageUnavailable")

    await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(retries) == 7, within=10)
        await runner.wait_idle()
        assert op._queues is not None
        assert op._queues.failures(Kind.REALM, ("r",)) == 0  # the success resets it
    # Each pull's pass sees the failures so far; each failure is one more.
    assert counted == [0, 0, 1, 1, 2, 2, 3]
    assert sample(op, "kukeon_reconcile_total", kind="Realm", result="requeued") == 3


def test_a_requeue_refuses_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="delay"):
        Requeue("x", delay=-1, reason="CrashLoopBackOff")


async def test_a_temporary_errors_retry_comes_no_later_than_its_at_most() -> None:
    """``at_most`` caps the retry's delay (asked for here, a back-off step otherwise): a
    handler with a deadline of its own (a stop's grace) is back by then."""
    store = FakeStore()
    op = operator(store)
    runs: list[float] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise TemporaryError("the host refused", delay=30 * DELAY, at_most=0.01)

    await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: len(runs) == 2, within=DELAY * 10)
        await runner.wait_idle()
    assert runs[1] - runs[0] < DELAY * 10
