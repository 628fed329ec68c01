"""kukectl against a two-node fleet: get/describe nodes, cordon, uncordon, drain."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner, Result

from kukeon.api import Cell, Kind, Node
from kukeon.cli import nodes as _nodes  # noqa: F401 (registers cordon/uncordon/drain)
from kukeon.cli.main import cli

from .conftest import Fleet

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
