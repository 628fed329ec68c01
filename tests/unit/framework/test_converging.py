"""The converge gate: closed while another kukeond holds this node's name, no handler,
retry or timer pass runs (one under way finishes); opened, everything is resynced."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import cast

import pytest

from kukeon.api import Kind, Realm
from kukeon.framework import ConvergeGate, HandlerContext, OperatorRunner, TemporaryError
from kukeon.framework.heartbeats import Heartbeat, NodeNameTaken
from kukeon.store import EtcdClient

from .fakes import FakeStore, realm, relabel
from .test_operator import operator, sample


async def test_the_gate_tells_each_opening_and_closing_once() -> None:
    gate = ConvergeGate()
    told: list[bool] = []
    gate.listen(told.append)
    assert gate.is_open()
    await asyncio.wait_for(gate.wait_open(), 1)  # open: at once

    gate.close("held by host-b")
    gate.close("held by host-c")  # closed already: only the reason changes
    assert not gate.is_open()
    assert gate.why_closed == "held by host-c"
    waiting = asyncio.create_task(gate.wait_open())
    await asyncio.sleep(0.02)
    assert not waiting.done()

    gate.open()
    gate.open()
    await asyncio.wait_for(waiting, 1)
    assert told == [False, True]
    assert gate.why_closed is None


async def test_a_failing_listener_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = ConvergeGate()
    told: list[bool] = []

    def broken(opened: bool) -> None:
        raise RuntimeError("boom")

    gate.listen(broken)
    gate.listen(told.append)
    gate.close("held")
    assert told == [False]
    assert "a listener of the converge gate failed" in caplog.text


async def test_a_closed_gate_runs_no_handler_and_its_opening_resyncs_everything() -> None:
    store = FakeStore()
    op = operator(store)
    seen: list[tuple[str, str]] = []
    release = asyncio.Event()

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        seen.append((obj.metadata.name, obj.metadata.labels.get("n", "-")))
        if obj.metadata.name == "slow":
            await release.wait()

    slow = await store.create(realm("slow"))
    other = await store.create(realm("other"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: ("other", "-") in seen and ("slow", "-") in seen)
        await runner.wait_for(lambda: op._queues is not None and op._queues.running == 1)

        op.gate.close("node name 'unit' is held by another kukeond")
        assert sample(op, "kukeon_node_name_displaced") == 1
        # The pass under way finishes; nothing else starts, however many changes come.
        release.set()
        for n in range(5):
            other = await store.update(relabel(other, n=str(n)))
        slow = await store.update(relabel(slow, n="x"))
        await asyncio.sleep(0.3)
        assert sorted(seen) == [("other", "-"), ("slow", "-")]
        assert not op.idle()  # the changes wait, coalesced
        assert op._queues is not None
        assert op._queues.depth(Kind.REALM) == 2

        op.gate.open()
        assert sample(op, "kukeon_node_name_displaced") == 0
        await runner.wait_idle()
    assert sorted(seen[2:]) == [("other", "4"), ("slow", "x")]


async def test_retries_wait_for_the_gate_too() -> None:
    store = FakeStore()
    op = operator(store)
    calls = 0

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TemporaryError("not yet", reason="NotYet", delay=0.05)

    await store.create(realm("r"))
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: calls == 1)
        op.gate.close("held elsewhere")
        await asyncio.sleep(0.3)  # the retry came due meanwhile
        assert calls == 1
        op.gate.open()
        await runner.wait_idle()
    assert calls == 2  # the retry and the resync's pass coalesced into one


async def test_an_operator_started_displaced_converges_nothing_until_the_name_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeStore()
    op = operator(store)
    seen: list[str] = []

    @op.reconcile(Kind.REALM)
    async def handle(obj: Realm, ctx: HandlerContext) -> None:
        seen.append(obj.metadata.name)

    await store.create(realm("r"))
    caplog.set_level(logging.WARNING, logger="kukeon.framework.operator")
    op.gate.close("held by another kukeond")
    async with OperatorRunner(op) as runner:
        await asyncio.sleep(0.2)
        assert seen == []
        assert "this one stops converging" in caplog.text
        op.gate.open()
        await runner.wait_for(lambda: seen == ["r"])
        assert "converging, resync" in caplog.text


def _claim_of(host: str) -> SimpleNamespace:
    """A heartbeat key as etcd answers it: on another lease, written from ``host``."""
    value = json.dumps({"node": "n1", "host": host, "startedAt": "t0", "ttl": 8})
    return SimpleNamespace(value=value.encode(), lease=0x2A)


def test_only_another_installations_claim_closes_the_gate() -> None:
    """An earlier process of this installation (a kill -9 whose lease lives on) runs
    nothing: /readyz waits for its lease, but converging goes on. Another kukeond's claim
    closes the gate."""
    gate = ConvergeGate()
    beat = Heartbeat(
        client=cast(EtcdClient, None),
        prefix="/p",
        node_name="n1",
        ttl=8,
        refresh_interval=1.0,
        host="here/0:/state",
        gate=gate,
    )
    beat._taken(_claim_of("here/0:/state"))
    assert gate.is_open()
    with pytest.raises(NodeNameTaken, match="earlier process of this installation"):
        beat.name_held()

    beat._taken(_claim_of("elsewhere/1:/x"))
    assert not gate.is_open()
    assert gate.why_closed is not None
    assert "converges nothing" in gate.why_closed
    with pytest.raises(NodeNameTaken, match=r"another kukeond \(elsewhere/1:/x"):
        beat.name_held()
