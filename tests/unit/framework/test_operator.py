"""The Operator with an in-memory store: coalescing, serialization, retries, relists."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import Kind, Realm, RealmState
from kukeon.framework import (
    HandlerContext,
    Operator,
    OperatorError,
    OperatorRunner,
    PermanentError,
    Settings,
    TemporaryError,
    WaitingError,
    default_finalizer,
    metrics_for,
)
from kukeon.store import Gone, HistoryRewound, InvalidStoredDocument, Unavailable

from .fakes import FakeStore, realm, relabel


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "node_name": "unit",
        "backoff_initial": 0.01,
        "backoff_max": 0.1,
        "resync_interval": None,
        "queue_idle_timeout": 0.05,
        "shutdown_grace": 0.5,
        "watch_retry_initial": 0.01,
    }
    values.update(overrides)
    return Settings(**values)


def operator(store: FakeStore, **overrides: Any) -> Operator:
    return Operator(
        store,
        settings=settings(**overrides),
        collector_registry=CollectorRegistry(),
        peering=False,
    )


def sample(op: Operator, name: str, **labels: str) -> float:
    return op.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_updates_during_a_run_collapse_into_one_more_run() -> None:
    store = FakeStore()
    op = operator(store)
    seen: list[str] = []
    gate = asyncio.Event()

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        seen.append(obj.metadata.labels.get("n", "-"))
        await gate.wait()

    current = await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: seen == ["-"])
        for n in range(50):
            current = await store.update(relabel(current, n=str(n)))
        gate.set()
        await runner.wait_idle()
    assert seen == ["-", "49"]


async def test_objects_run_in_parallel_up_to_max_workers() -> None:
    store = FakeStore()
    op = operator(store, max_workers=3)
    running = 0
    peak = 0

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    for index in range(12):
        await store.create(realm(f"r{index}"))
    async with OperatorRunner(op) as runner:
        await runner.wait_idle()
    assert peak == 3
    assert sample(op, "kukeon_reconcile_total", kind="Realm", result="success") == 12


async def test_idle_workers_are_dropped_and_deleted_objects_forgotten() -> None:
    store = FakeStore()
    op = operator(store)
    calls = 0

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1

    created = await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_idle()
        queues = op._queues
        assert queues is not None
        state = queues._states[(Kind.REALM, ("r",))]
        await runner.wait_for(lambda: state.worker is None, within=2)
        await store.delete(Kind.REALM, ("r",))
        await runner.wait_for(lambda: (Kind.REALM, ("r",)) not in queues._states, within=2)
        # Re-created under the same name: a new object, handled again.
        await store.create(realm("r"))
        await runner.wait_for(lambda: calls == 2)
    assert created.metadata.name == "r"


async def test_temporary_errors_back_off_and_a_success_resets_the_count() -> None:
    store = FakeStore()
    op = operator(store)
    retries: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        retries.append(ctx.retry)
        if obj.metadata.labels.get("fail") == "yes" and ctx.retry < 3:
            raise TemporaryError("not yet", delay=0.01 if ctx.retry == 2 else None)

    current = await store.create(realm("r", fail="yes"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: retries == [0, 1, 2, 3])
        await runner.wait_idle()
        assert op._queues is not None
        assert op._queues.failures(Kind.REALM, ("r",)) == 0
        current = await store.get(Kind.REALM, ("r",))
        await store.update(relabel(current, fail="no"))
        await runner.wait_for(lambda: retries == [0, 1, 2, 3, 0])
    assert sample(op, "kukeon_reconcile_retries_total", kind="Realm") == 3
    stored = await store.get(Kind.REALM, ("r",))
    assert stored.status.reason == "TemporaryFailure"


async def test_a_wait_is_retried_and_recorded_like_a_temporary_error_but_logged_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store)
    retries: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        retries.append(ctx.retry)
        if len(retries) == 1:
            raise WaitingError("waiting for its parent", reason="ParentNotReady")
        if len(retries) == 2:
            raise TemporaryError("the host refused", reason="HostBusy")

    await store.create(realm("r"))
    with caplog.at_level(logging.INFO, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            # The failure after a wait is the first failure: waits are counted apart.
            await runner.wait_for(lambda: retries == [0, 1, 1])
            await runner.wait_idle()
    levels = {
        record.levelno for record in caplog.records if "ParentNotReady" in record.getMessage()
    }
    assert levels == {logging.INFO}
    assert any(
        record.levelno == logging.WARNING and "HostBusy" in record.getMessage()
        for record in caplog.records
    )
    # The failure's retry only: a wait is no error, so it counts no retry.
    assert sample(op, "kukeon_reconcile_retries_total", kind="Realm") == 1


async def test_permanent_errors_wait_for_a_spec_or_metadata_change() -> None:
    store = FakeStore()
    op = operator(store)
    calls: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        calls.append(obj.metadata.labels["v"])
        if obj.metadata.labels["v"] == "1":
            raise PermanentError("bad value", reason="BadValue")

    await store.create(realm("r", v="1"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: calls == ["1"])
        await runner.wait_idle()
        stored = await store.get(Kind.REALM, ("r",))
        assert stored.status.reason == "BadValue"
        # A status-only write and a resync leave it parked.
        await op.patch_status(stored, state=RealmState.FAILED)
        op.resync()
        await asyncio.sleep(0.05)
        await runner.wait_idle()
        assert calls == ["1"]
        stored = await store.get(Kind.REALM, ("r",))
        await store.update(relabel(stored, v="2"))
        await runner.wait_for(lambda: calls == ["1", "2"])
    assert op.queue_depth(Kind.REALM) == 0


async def test_gone_relists_and_forgets_what_disappeared() -> None:
    store = FakeStore()
    op = operator(store)
    handled: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        handled.append(obj.metadata.name)

    await store.create(realm("stays"))
    await store.create(realm("goes"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: sorted(handled) == ["goes", "stays"])
        assert op._queues is not None
        # While the watch is broken: one object vanishes without a DELETED event, one appears.
        del store.objects[(Kind.REALM, ("goes",))]
        store.history.clear()
        await store.create(realm("new"))
        store.compact()
        store.break_watches(Gone("compacted", compacted_revision=store.revision))
        await runner.wait_for(lambda: "new" in handled)
        queues = op._queues
        await runner.wait_for(lambda: sorted(queues.known(Kind.REALM)) == [("new",), ("stays",)])
    assert sample(op, "kukeon_watch_restarts_total", kind="Realm", reason="gone") == 1


async def test_a_rewound_store_is_relisted_whatever_the_revisions_held() -> None:
    """etcd restored from an older snapshot: its revisions are below the ones held, and
    the list replaces them all (before, older versions were dropped as stale copies and
    objects missing from the list were kept, being newer than it)."""
    store = FakeStore()
    op = operator(store)
    handled: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        handled.append(f"{obj.metadata.name}={obj.metadata.labels.get('n', '-')}")

    kept = await store.create(realm("kept", n="0"))
    snapshot = (dict(store.objects), store.revision)
    await store.update(relabel(kept, n="1"))
    await store.create(realm("lost"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: sorted(handled) == ["kept=1", "lost=-"])
        assert op._queues is not None
        queues = op._queues
        # The restore: the store goes back to the snapshot and is written on from there.
        store.objects, store.revision = snapshot
        store.history.clear()
        again = await store.update(relabel(store.objects[(Kind.REALM, ("kept",))], n="2"))
        assert int(again.metadata.resource_version or 0) < queues.seen_revision(Kind.REALM)
        store.break_watches(HistoryRewound("rewound", revision=store.revision, seen=4))
        await runner.wait_for(lambda: handled[-1:] == ["kept=2"])
        await runner.wait_for(lambda: queues.known(Kind.REALM) == [("kept",)])
        assert queues.seen_revision(Kind.REALM) == store.revision
    assert sample(op, "kukeon_watch_restarts_total", kind="Realm", reason="rewound") == 1


async def test_unavailable_resumes_from_the_last_revision() -> None:
    store = FakeStore()
    op = operator(store)
    handled: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        handled.append(obj.metadata.labels.get("n", "-"))

    current = await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        current = await store.update(relabel(current, n="1"))
        await runner.wait_for(lambda: handled[-1:] == ["1"])
        last = store.revision
        store.break_watches(Unavailable("etcd away"))
        await runner.wait_for(lambda: len(store.watch_starts) == 2)
        await store.update(relabel(current, n="2"))
        await runner.wait_for(lambda: handled[-1:] == ["2"])
    assert store.watch_starts[-1] == last
    assert sample(op, "kukeon_watch_restarts_total", kind="Realm", reason="unavailable") == 1


async def test_finalize_failures_retry_and_keep_the_object() -> None:
    store = FakeStore()
    op = operator(store)
    attempts = 0

    @op.finalize(Kind.REALM)
    async def tear_down(obj: Realm, ctx: HandlerContext) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError("still busy")

    await store.create(realm("r"))
    finalizer = default_finalizer(Kind.REALM)
    async with OperatorRunner(op) as runner:

        def has_finalizer() -> bool:
            obj = store.objects.get((Kind.REALM, ("r",)))
            return obj is not None and finalizer in obj.metadata.finalizers

        await runner.wait_for(has_finalizer)
        await store.delete(Kind.REALM, ("r",))
        await runner.wait_for(lambda: (Kind.REALM, ("r",)) not in store.objects)
    assert attempts == 3


async def test_a_deleted_object_another_operator_finalizes_is_left_to_it() -> None:
    """Two operators (two nodes) hold one finalizer name: only the one ``runs`` chooses
    tears down and drops it; the other does not, even if it sees the deletion first."""
    store = FakeStore()
    mine, theirs = operator(store, node_name="n1"), operator(store, node_name="n2")
    finalized: list[str] = []
    release = asyncio.Event()

    def owned_by(node: str) -> Any:
        return lambda obj: obj.metadata.labels.get("node") == node

    for op, node in ((mine, "n1"), (theirs, "n2")):

        @op.finalize(Kind.REALM, when=owned_by(node), runs=owned_by(node))
        async def tear_down(obj: Realm, ctx: HandlerContext, node: str = node) -> None:
            if node == "n1":
                await release.wait()  # n2 sees the deletion first
            finalized.append(node)

    await store.create(relabel(realm("r"), node="n1"))
    finalizer = default_finalizer(Kind.REALM)
    async with OperatorRunner(mine) as runner, OperatorRunner(theirs) as other:

        def has_finalizer() -> bool:
            obj = store.objects.get((Kind.REALM, ("r",)))
            return obj is not None and finalizer in obj.metadata.finalizers

        await runner.wait_for(has_finalizer)
        await store.delete(Kind.REALM, ("r",))
        await other.wait_idle()
        assert (Kind.REALM, ("r",)) in store.objects  # n2 left it to n1
        release.set()
        await runner.wait_for(lambda: (Kind.REALM, ("r",)) not in store.objects)
    assert finalized == ["n1"]


async def test_registration_mistakes_are_refused() -> None:
    store = FakeStore()
    op = operator(store)

    @op.reconcile(Kind.REALM)
    async def first(obj: Realm, ctx: HandlerContext) -> None: ...

    with pytest.raises(OperatorError, match="already registered"):

        @op.reconcile(Kind.REALM)
        async def second(obj: Realm, ctx: HandlerContext) -> None: ...

    with pytest.raises(ValueError, match="interval"):
        op.timer(Kind.REALM, 0)

    @op.singleton("leader-only")
    async def lonely(ctx: object) -> None: ...

    with pytest.raises(OperatorError, match="etcd client"):
        await op.start()

    late = operator(store)
    async with OperatorRunner(late):
        with pytest.raises(OperatorError, match="before the operator starts"):

            @late.reconcile(Kind.SPACE)
            async def too_late(obj: Realm, ctx: HandlerContext) -> None: ...


def test_metrics_are_shared_per_collector_registry() -> None:
    registry = CollectorRegistry()
    assert metrics_for(registry) is metrics_for(registry)
    store = FakeStore()
    # Two operators on the global registry: no duplicate-registration error.
    first = Operator(store, settings=settings(), peering=False)
    second = Operator(store, settings=settings(), peering=False)
    assert first.metrics is second.metrics


async def test_handler_failures_are_logged_with_the_key(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    op = operator(store, backoff_initial=10.0, backoff_max=10.0)

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        raise KeyError("missing")

    await store.create(realm("logged"))
    with caplog.at_level(logging.WARNING, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: store.status_writes == 1)
    records = [r for r in caplog.records if getattr(r, "key", None) == "logged"]
    assert records
    assert records[0].kind == "Realm"  # type: ignore[attr-defined]
    assert "Realm logged" in records[0].getMessage()
    assert records[0].reason == "UnexpectedError"  # type: ignore[attr-defined]
    assert records[0].retry == 0  # type: ignore[attr-defined]


async def test_run_serves_until_a_stop_is_requested() -> None:
    store = FakeStore()
    op = operator(store)
    lifecycle: list[str] = []

    @op.on_startup
    async def hello(ctx: object) -> None:
        lifecycle.append("startup")

    @op.on_shutdown
    async def bye(ctx: object) -> None:
        lifecycle.append("shutdown")

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        lifecycle.append(obj.metadata.name)

    await store.create(realm("r"))
    serving = asyncio.create_task(op.run())
    await OperatorRunner.wait_for(lambda: "r" in lifecycle)
    op.request_stop()
    await asyncio.wait_for(serving, 5)
    assert lifecycle == ["startup", "r", "shutdown"]


async def test_a_failing_startup_handler_fails_the_start() -> None:
    store = FakeStore()
    op = operator(store)

    @op.on_startup
    async def broken(ctx: object) -> None:
        raise RuntimeError("no cgroup mount")

    with pytest.raises(RuntimeError, match="no cgroup mount"):
        async with OperatorRunner(op):
            pass


async def test_trigger_runs_an_unchanged_known_object_again() -> None:
    store = FakeStore()
    op = operator(store)
    causes: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        causes.append(ctx.cause)

    await store.create(realm("r"))
    assert not op.running
    assert not op.trigger(Kind.REALM, ("r",))
    async with OperatorRunner(op) as runner:
        assert op.running
        await runner.wait_for(lambda: causes == ["change"])
        assert op.trigger(Kind.REALM, ("r",))
        assert not op.trigger(Kind.REALM, ("unknown",))
        await runner.wait_for(lambda: len(causes) == 2)
        await runner.wait_idle()
    assert not op.running
    assert len(causes) == 2


async def test_a_broken_stored_document_is_retried_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store)
    retries: list[int] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        retries.append(ctx.retry)
        if ctx.retry == 0:  # e.g. the parent read by the handler was written by hand
            raise InvalidStoredDocument(
                "Realm 'p': the document stored at /k/realms/p is invalid: no metadata object",
                kind="Realm",
                name="p",
                key="/k/realms/p",
                revision=3,
                reason="no metadata object",
            )

    await store.create(realm("r"))
    with caplog.at_level(logging.WARNING, logger="kukeon.framework"):
        async with OperatorRunner(op) as runner:
            await runner.wait_for(lambda: retries == [0, 1])
            await runner.wait_idle()
    records = [r for r in caplog.records if "InvalidStoredDocument" in r.getMessage()]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].exc_info is None
    assert records[0].reason == "InvalidStoredDocument"  # type: ignore[attr-defined]
    assert sample(op, "kukeon_reconcile_total", kind="Realm", result="temporary_error") == 1
