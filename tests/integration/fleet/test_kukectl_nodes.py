"""kukectl against a two-node fleet: get/describe nodes, cordon, uncordon, drain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kukeon.api import Cell, Kind, Node, Realm
from kukeon.api.realm import RealmLimits
from kukeon.cli import nodes as _nodes  # noqa: F401 (registers cordon/uncordon/drain)
from kukeon.cli.main import cli

from .conftest import SLEEPER, Fleet

pytestmark = pytest.mark.integration


async def kukectl(fleet: Fleet, *args: str) -> Result:
    node = next(n for n in fleet.nodes.values() if n.daemon is not None)
    server = f"unix://{node.config.api_socket}"
    # kukectl runs its own event loop: give it a thread.
    return await asyncio.to_thread(
        CliRunner().invoke, cli, ["--server", server, *args], catch_exceptions=False
    )


async def test_get_describe_cordon_uncordon_drain(fleet: Fleet) -> None:
    for index in range(2):
        await fleet.add_node(index)
    await fleet.hierarchy()
    drained, other = fleet.names
    await fleet.wait_for(Kind.NODE, (drained,), state="Ready")

    listed = await kukectl(fleet, "get", "nodes")
    assert listed.exit_code == 0, listed.output
    assert drained in listed.output
    assert other in listed.output
    described = await kukectl(fleet, "describe", "node", drained)
    assert described.exit_code == 0, described.output
    assert "fleet-index" in described.output

    # Cordon the other node: new cells all land on `drained`.
    cordoned = await kukectl(fleet, "cordon", other)
    assert cordoned.exit_code == 0, cordoned.output
    node = await fleet.node(other)
    assert node.spec.unschedulable
    for index in range(3):
        await fleet.apply(fleet.cell_doc(f"d{index}"))
    await fleet.apply(fleet.cell_doc("pinned", nodeName=drained))
    cells = await fleet.wait_all(
        lambda cs: len(cs) == 4 and all(str(c.status.state) == "Ready" for c in cs), within=90
    )
    assert {c.spec.node_name for c in cells} == {drained}

    uncordoned = await kukectl(fleet, "uncordon", other)
    assert uncordoned.exit_code == 0, uncordoned.output
    assert not (await fleet.node(other)).spec.unschedulable

    result = await kukectl(fleet, "drain", drained, "--timeout", "60s")
    assert result.exit_code == 0, result.output
    assert "pinned" in result.output
    assert result.output.count("stopped on node/") == 3, result.output
    drained_node = await fleet.node(drained)
    assert isinstance(drained_node, Node)
    assert drained_node.spec.unschedulable
    # drain returned once the drained node had stopped its copies (issue 21): no orphan
    # collection needed, only the pinned cell's container is left there.
    assert await fleet.containers_of(drained) == ["s1_st1_pinned_main"]

    def moved(cs: list[Cell]) -> bool:
        return all(
            (c.spec.node_name == drained) == (c.metadata.name == "pinned")
            and str(c.status.state) == "Ready"
            for c in cs
        )

    await fleet.wait_all(moved, within=90)


CAP = 64 * 1024 * 1024


async def test_drain_counts_a_capped_realms_memory_as_the_scheduler_does(fleet: Fleet) -> None:
    """The realm is held to 64 MiB (``spec.limits.memoryBytes``, its cgroup's memory.max on
    every node); one of its cells, pinned to the other node, declares that node's whole
    allocatable memory. It reserves 64 MiB there (``placement.reserved_memory``), so the
    drained node's 64 MiB cell fits beside it: drain hands it back and the scheduler places
    it on the other node, where it runs.

    On the tree before: drain counted the limits whole (0 free on the other node) and left
    the cell running on the drained one ("no other node can take it (... not enough
    memory: needs 67108864 bytes, 0 free)"), though the scheduler would have placed it."""
    for index in range(2):
        await fleet.add_node(index)
    await fleet.hierarchy()
    drained, other = fleet.names
    target = await fleet.wait_for(
        Kind.NODE,
        (other,),
        until=lambda n: isinstance(n, Node) and n.status.allocatable.memory_bytes > 0,
    )
    assert isinstance(target, Node)
    allocatable = target.status.allocatable.memory_bytes
    realm = await fleet.registry.get(Kind.REALM, (fleet.realm,))
    assert isinstance(realm, Realm)
    limits = RealmLimits(memory_bytes=CAP)
    await fleet.registry.update(
        realm.model_copy(update={"spec": realm.spec.model_copy(update={"limits": limits})})
    )

    def sleeper(memory: int) -> list[dict[str, Any]]:
        main = {"id": "main", "image": fleet.image.name, "command": "sh", "args": SLEEPER}
        return [{**main, "resources": {"memoryLimitBytes": memory}}]

    await fleet.apply(fleet.cell_doc("hog", nodeName=other, containers=sleeper(allocatable)))
    await fleet.wait_for(Kind.CELL, fleet.cell_key("hog"), state="Ready")
    # Fewest cells first: the scheduler puts it on `drained`, the other node has the hog.
    await fleet.apply(fleet.cell_doc("web", containers=sleeper(CAP)))
    placed = await fleet.wait_for(Kind.CELL, fleet.cell_key("web"), state="Ready")
    assert isinstance(placed, Cell)
    assert placed.spec.node_name == drained

    result = await kukectl(fleet, "drain", drained, "--timeout", "60s")
    assert result.exit_code == 0, result.output
    assert "no other node can take it" not in result.output, result.output
    assert f"cell/{'/'.join(fleet.cell_key('web'))} stopped on node/{drained}" in result.output
    moved = await fleet.wait_for(
        Kind.CELL,
        fleet.cell_key("web"),
        until=lambda c: (
            isinstance(c, Cell) and c.spec.node_name == other and str(c.status.state) == "Ready"
        ),
        within=90,
    )
    assert isinstance(moved, Cell)
