"""A node agent whose node name another kukeond holds writes nothing of the node.

Before, a displaced kukeond kept beating: it wrote its own addresses, capacity and API
endpoint into the holder's Node status and put the fleet heartbeat key back on its own
lease at every beat, the holder putting it back on its own at the next: two processes
fighting over one node's heartbeat."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

import pytest

from kukeon.daemon import node
from kukeon.daemon.config import DaemonConfig
from kukeon.framework import ConvergeGate, LeaseSession, Operator, Settings
from kukeon.store import Registry
from tests.unit.framework.fakes import FakeStore


async def test_a_displaced_agent_gives_up_its_lease_and_beats_once_the_name_is_back() -> None:
    gate = ConvergeGate()
    registry = cast(Registry, SimpleNamespace(key_prefix="/kukeon-test"))
    agent = node.NodeAgent(
        registry=registry,
        config=DaemonConfig(node_name="n-displaced", node_heartbeat_seconds=0.05),
        containerd=None,
        gate=gate,
    )
    calls: list[str] = []
    revoked: list[bool] = []

    async def close(*, revoke: bool) -> None:
        revoked.append(revoke)

    async def step(name: str) -> None:
        calls.append(name)

    agent._session = cast(LeaseSession, SimpleNamespace(lost=asyncio.Event(), close=close))

    async def new_lease() -> None:
        await step("lease")
        agent._session = cast(LeaseSession, SimpleNamespace(lost=asyncio.Event(), close=close))

    agent._new_lease = new_lease  # type: ignore[method-assign]
    agent.keep_key = lambda: step("keep_key")  # type: ignore[method-assign]
    agent.beat = lambda: step("beat")  # type: ignore[method-assign]
    agent._register = lambda: step("register")  # type: ignore[method-assign]

    gate.close("held by another kukeond")
    running = asyncio.create_task(agent._run())
    try:
        await asyncio.sleep(0.3)
        assert calls == []
        assert revoked == [True]  # its lease (and a heartbeat key on it) given up
        assert not agent.holds_lease()
        assert agent.silent_for() == 0.0  # nothing to fence on
        await agent.set_api_port(8443)  # a port bound meanwhile: not written either
        assert calls == []

        gate.open()
        for _ in range(100):
            if "beat" in calls:
                break
            await asyncio.sleep(0.02)
        assert calls[:3] == ["lease", "keep_key", "beat"]
        assert agent._labels_owed  # the first beat brings the Node's labels up to date
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_failed_fleet_start_ends_the_name_claim_it_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """start_fleet claims the node name before the agent starts; a start that fails then
    ends that claim (revoked, not left to expire with a task nobody stops)."""
    store = FakeStore()
    op = Operator(store, settings=Settings(node_name="n-failed"), peering=False)
    claimed: list[str] = []

    async def claim() -> None:
        claimed.append("claim")

    async def stop(*, release_leases: bool = True) -> None:
        claimed.append("stop")

    async def refuse(self: node.NodeAgent) -> None:
        raise RuntimeError("etcd went away")

    monkeypatch.setattr(op, "claim_node_name", claim)
    monkeypatch.setattr(op, "stop", stop)
    monkeypatch.setattr(node.NodeAgent, "start", refuse)
    with pytest.raises(RuntimeError, match="etcd went away"):
        await node.start_fleet(
            op,
            registry=cast(Registry, SimpleNamespace(key_prefix="/kukeon-test")),
            config=DaemonConfig(node_name="n-failed"),
            containerd=None,
        )
    assert claimed == ["claim", "stop"]
