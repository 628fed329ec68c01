"""Three kukeond nodes on one etcd: registration, spreading, selectors, node loss and return."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime

import pytest

from kukeon.api import SCHEDULED_BY_ANNOTATION, AnyResource, Cell, Kind, Node
from kukeon.store import Conflict

from .conftest import LEASE_TTL, Fleet

pytestmark = pytest.mark.integration


async def test_nodes_register_with_capacity_and_heartbeat(fleet: Fleet) -> None:
    for index in range(2):
        await fleet.add_node(index)
    for name in fleet.names:
        node = await fleet.wait_for(Kind.NODE, (name,), state="Ready")
        assert isinstance(node, Node)
        capacity = node.status.capacity
        assert capacity.cpus >= 1
        assert capacity.memory_bytes > 0
        assert capacity.containerd_version
        assert capacity.cgroup_mode
        assert "bridge" in capacity.cni_plugins
        assert node.metadata.labels["fleet-index"] in ("0", "1")
        assert {c.type for c in node.status.conditions} >= {"Ready", "MemoryPressure"}
        first_beat = node.status.last_heartbeat_time
        assert first_beat is not None

        def beat_again(node: AnyResource, first: datetime = first_beat) -> bool:
            return bool((node.status.last_heartbeat_time or first) > first)

        later = await fleet.wait_for(Kind.NODE, (name,), until=beat_again, within=10)
        assert later.status.state == "Ready"


async def test_cells_spread_pin_by_selector_and_unschedulable(fleet: Fleet) -> None:
    for index in range(3):
        await fleet.add_node(index)
    await fleet.hierarchy()
    for index in range(30):
        await fleet.apply(fleet.cell_doc(f"c{index:02d}"))
    pinned = fleet.names[2]
    for index in range(3):
        await fleet.apply(fleet.cell_doc(f"sel{index}", nodeSelector={"fleet-index": "2"}))
    await fleet.apply(fleet.cell_doc("nowhere", nodeSelector={"gpu": "yes"}))

    def placed(cells: list[Cell]) -> bool:
        return all(c.spec.node_name for c in cells if c.metadata.name != "nowhere")

    cells = await fleet.wait_all(placed, within=60)
    spread = Counter(c.spec.node_name for c in cells if c.metadata.name.startswith("c"))
    assert set(spread) == set(fleet.names)
    assert max(spread.values()) <= 12, spread
    for cell in cells:
        if cell.metadata.name.startswith("sel"):
            assert cell.spec.node_name == pinned
        if cell.spec.node_name:
            assert cell.metadata.annotations[SCHEDULED_BY_ANNOTATION] == "scheduler"

    nowhere = await fleet.wait_for(
        Kind.CELL,
        fleet.cell_key("nowhere"),
        until=lambda c: c.status.reason == "Unschedulable",
        within=20,
    )
    assert str(nowhere.status.state) == "Pending"
    assert nowhere.spec.node_name is None
    for name in fleet.names:
        assert f"{name}: labels do not match nodeSelector gpu=yes" in (nowhere.status.message or "")

    # Every placed cell runs on its own node only.
    ready = await fleet.wait_all(
        lambda cs: all(str(c.status.state) == "Ready" for c in cs if c.spec.node_name),
        within=180,
    )
    for name in fleet.names:
        wanted = {f"s1_st1_{c.metadata.name}_main" for c in ready if c.spec.node_name == name}
        assert set(await fleet.containers_of(name)) == wanted


async def test_node_loss_reschedules_unpinned_cells_and_the_node_returns_clean(
    fleet: Fleet,
) -> None:
    for index in range(2):
        await fleet.add_node(index)
    await fleet.hierarchy()
    # The scheduler leader's own lease has the operator's TTL (15 s); losing the other
    # node keeps this test within the node lease's timings.
    survivor = await fleet.leader()
    lost = next(name for name in fleet.names if name != survivor)
    for index in range(4):
        await fleet.apply(fleet.cell_doc(f"free{index}"))
    await fleet.apply(fleet.cell_doc("pinned", nodeName=lost))
    cells = await fleet.wait_all(
        lambda cs: all(str(c.status.state) == "Ready" for c in cs), within=120
    )
    moving = {c.metadata.name for c in cells if c.spec.node_name == lost} - {"pinned"}
    if not moving:
        # Make sure the lost node runs at least one unpinned cell.
        victim = next(c for c in cells if c.metadata.name.startswith("free"))
        for _ in range(5):
            try:
                await fleet.registry.update(
                    victim.model_copy(
                        update={"spec": victim.spec.model_copy(update={"node_name": lost})}
                    )
                )
                break
            except Conflict:
                found = await fleet.registry.get(Kind.CELL, fleet.cell_key(victim.metadata.name))
                assert isinstance(found, Cell)
                victim = found
        moving = {victim.metadata.name}
        await fleet.wait_for(Kind.CELL, fleet.cell_key(victim.metadata.name), state="Ready")

    loop = asyncio.get_running_loop()
    crashed_at = loop.time()
    await fleet.crash(lost)
    await fleet.wait_for(Kind.NODE, (lost,), state="NotReady", within=LEASE_TTL + 5)
    assert loop.time() - crashed_at <= LEASE_TTL + 5
    await fleet.wait_for(Kind.CELL, fleet.cell_key("pinned"), state="Unknown", within=10)

    def moved(cs: list[Cell]) -> bool:
        by_name = {c.metadata.name: c for c in cs}
        return all(
            by_name[name].spec.node_name == survivor and str(by_name[name].status.state) == "Ready"
            for name in moving
        )

    await fleet.wait_all(moved, within=90)
    pinned = await fleet.registry.get(Kind.CELL, fleet.cell_key("pinned"))
    assert pinned.spec.node_name == lost
    assert str(pinned.status.state) == "Unknown"

    await fleet.start(lost)
    await fleet.wait_for(Kind.NODE, (lost,), state="Ready", within=20)
    await fleet.wait_for(Kind.CELL, fleet.cell_key("pinned"), state="Ready", within=60)
    cells = await fleet.cells()
    # No duplicate workloads: every cell has exactly one container, on its own node.
    everything = await fleet.all_containers()
    assert sorted(everything) == sorted(f"s1_st1_{c.metadata.name}_main" for c in cells)
    assert set(await fleet.containers_of(lost)) == {
        f"s1_st1_{c.metadata.name}_main" for c in cells if c.spec.node_name == lost
    }
