"""A running operator against bad stored data and crashing loops, on a real etcd.

A malformed document must not stop a kind's watch; a loop that crashes anyway is
restarted by the supervisor, counted, and the operator is not ready until it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aetcd import rpc
from prometheus_client import CollectorRegistry

from kukeon.api import Kind, Realm, RealmState
from kukeon.framework import HandlerContext, Operator, OperatorRunner, TasksDown
from kukeon.store import Registry, WatchEvent

from .helpers import fast_settings, new_realm, sample

pytestmark = pytest.mark.integration


async def put_raw(registry: Registry, key: str, value: bytes) -> None:
    client = registry.client
    await client.kvstub.Put(
        rpc.PutRequest(key=key.encode(), value=value), timeout=10, metadata=client.metadata
    )


async def _until(condition: Callable[[], bool], within: float = 15.0) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {within}s")


def _ready(op: Operator) -> bool:
    try:
        return op.ready()
    except TasksDown:
        return False


async def test_a_malformed_document_does_not_stop_the_watch(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = CollectorRegistry()
    op = Operator(registry, settings=fast_settings(), collector_registry=metrics, peering=False)

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        await ctx.patch_status(realm, state=RealmState.READY)

    bad_before = registry.key_for(Kind.REALM, ("before",))
    bad_after = registry.key_for(Kind.REALM, ("x",))
    await put_raw(registry, bad_before, b"not json at all")
    with caplog.at_level(logging.WARNING):
        async with OperatorRunner(op):
            await put_raw(registry, bad_after, b'{"x":1}')  # the reproducer
            await registry.create(new_realm("after"))
            await op.wait_idle(within=15)
            op.resync()
            await op.wait_idle(within=15)
            realm = await registry.get(Kind.REALM, ("after",))
            assert realm.status.state == RealmState.READY
            assert op.ready()
    assert sample(metrics, "kukeon_task_restarts_total", task="kukeon-watch Realm") == 0
    for key in (bad_before, bad_after):
        assert sum(key in r.getMessage() for r in caplog.records) == 1
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]


async def test_a_crashing_watch_is_restarted_and_readiness_follows(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = CollectorRegistry()
    op = Operator(registry, settings=fast_settings(), collector_registry=metrics, peering=False)
    # A slower first restart, so "not ready" can be seen before the loop is back.
    op.tasks.backoff_initial = 0.5
    op.tasks.recovered_after = 0.3
    handled: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(realm: Realm, ctx: HandlerContext) -> None:
        handled.append(realm.metadata.name)

    real_watch = registry.watch
    crash = asyncio.Event()

    async def watch(kind: Kind, *args: Any, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        async for event in real_watch(kind, *args, **kwargs):
            if crash.is_set():
                crash.clear()
                raise RuntimeError("a bug in the watch loop")
            yield event

    monkeypatch.setattr(registry, "watch", watch)
    # The runner reports every crash when the block ends: this one is expected.
    expected = "background task\\(s\\) crashed: background task kukeon-watch Realm crashed"

    async def scenario() -> None:
        async with OperatorRunner(op):
            assert op.ready()
            crash.set()
            await registry.create(new_realm("trigger"))
            await _until(lambda: not _ready(op))
            with pytest.raises(TasksDown, match="kukeon-watch Realm down after 1 crash"):
                op.ready()
            await _until(lambda: _ready(op))
            # Back, and relisted: the object whose event crashed the loop is handled.
            await _until(lambda: "trigger" in handled)
            await registry.create(new_realm("later"))
            await _until(lambda: "later" in handled)

    caplog.set_level(logging.ERROR, logger="kukeon.framework.aiotasks")
    with pytest.raises(AssertionError, match=expected):
        await scenario()
    assert sample(metrics, "kukeon_task_restarts_total", task="kukeon-watch Realm") == 1
    crashes = [r for r in caplog.records if "kukeon-watch Realm crashed" in r.getMessage()]
    assert len(crashes) == 1
    assert crashes[0].exc_info is not None
    # Stopped cleanly: nothing restarted after the stop.
    assert op.tasks.tasks == []
