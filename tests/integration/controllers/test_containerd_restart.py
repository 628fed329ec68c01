"""containerd killed (kill -9) and started again under running cells: the cells keep running
(their shims do), kukeond reconnects, follows task exits again, and a cell created while
containerd was down starts once it is back."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from kukeon.api import AnyResource, Cell, Kind
from tests.fixtures.containerd import PrivateContainerd
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration


def _pid(cell: AnyResource) -> int | None:
    assert isinstance(cell, Cell)
    return cell.status.containers[0].pid if cell.status.containers else None


async def test_cells_ride_through_a_containerd_crash(
    kukeond: Kukeond, containerd_daemon: PrivateContainerd
) -> None:
    k = kukeond
    await k.hierarchy()
    app = container(k, "a", restartPolicy="always", restartBackoffSeconds=1)
    await k.apply(cell_doc(k, "steady", [app]))
    ready = await k.wait_for(Kind.CELL, cell_key(k, "steady"), state="Ready")
    pid = _pid(ready)
    assert pid is not None

    await asyncio.to_thread(containerd_daemon.kill)
    try:
        os.kill(pid, 0)  # the container outlives containerd: its shim holds it
        await k.apply(cell_doc(k, "during", [container(k, "a")]))
        await asyncio.sleep(2)
    finally:
        await asyncio.to_thread(containerd_daemon.start)

    # The cell created meanwhile starts; the running one was never restarted.
    await k.wait_for(Kind.CELL, cell_key(k, "during"), state="Ready", within=90)
    steady = await k.wait_for(Kind.CELL, cell_key(k, "steady"), state="Ready", within=60)
    assert _pid(steady) == pid

    # Exits are followed again: the killed process is restarted by its policy.
    os.kill(pid, signal.SIGKILL)

    def restarted(cell: AnyResource) -> bool:
        assert isinstance(cell, Cell)
        first = cell.status.containers[0] if cell.status.containers else None
        return first is not None and first.restart_count >= 1 and first.pid not in (None, pid)

    await k.wait_for(Kind.CELL, cell_key(k, "steady"), until=restarted, within=60)


async def test_the_node_says_when_its_containerd_does_not_answer(
    kukeond: Kukeond, containerd_daemon: PrivateContainerd
) -> None:
    """containerd down: the node's heartbeat reports RuntimeUnavailable=True (the node stays
    Ready, its cells run on), /readyz's runtime check fails naming it and the cells' status
    says they cannot be observed (a resync, not the next periodic one); back, all clear."""
    from kukeon.api import Node
    from kukeon.api.node import RUNTIME_UNAVAILABLE
    from kukeon.daemon.node import ContainerdUnreachable

    k = kukeond
    fleet = k.daemon.fleet
    assert fleet is not None

    async def runtime_condition() -> tuple[str, str]:
        node = await k.registry.get(Kind.NODE, (k.config.node_name,))
        assert isinstance(node, Node)
        assert node.status.state == "Ready"
        (found,) = [c for c in node.status.conditions if c.type == RUNTIME_UNAVAILABLE]
        return found.status, found.reason or ""

    await k.hierarchy()
    await k.apply(cell_doc(k, "watched", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "watched"), state="Ready")
    await fleet.agent.beat()
    assert await runtime_condition() == ("False", "ContainerdReachable")
    assert fleet.agent.runtime_ready()
    await asyncio.to_thread(containerd_daemon.kill)
    try:
        await fleet.agent.beat()
        assert await runtime_condition() == ("True", "ContainerdUnreachable")
        with pytest.raises(ContainerdUnreachable, match="does not answer"):
            fleet.agent.runtime_ready()
        unobserved = await k.wait_for(Kind.CELL, cell_key(k, "watched"), state="Unknown", within=30)
        assert unobserved.status.reason == "HostUnobservable"
    finally:
        await asyncio.to_thread(containerd_daemon.start)
    await fleet.agent.beat()
    assert await runtime_condition() == ("False", "ContainerdReachable")
    assert fleet.agent.runtime_ready()
    await k.wait_for(Kind.CELL, cell_key(k, "watched"), state="Ready", within=30)
