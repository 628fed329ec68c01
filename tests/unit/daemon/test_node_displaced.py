"""A node agent whose node name another kukeond holds writes nothing of the node.

Before, a displaced kukeond kept beating: it wrote its own addresses, capacity and API
endpoint into the holder's Node status and put the fleet heartbeat key back on its own
lease at every beat, the holder putting it back on its own at the next: two processes
fighting over one node's heartbeat."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

from kukeon.daemon import node
from kukeon.daemon.config import DaemonConfig
from kukeon.framework import ConvergeGate, LeaseSession
from kukeon.store import Registry


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
