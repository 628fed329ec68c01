"""Undecodable cell documents in a fleet: the node that runs the cell says so, and the
leader says every one (a cell running nowhere too); the other nodes do not repeat it."""

from __future__ import annotations

import asyncio

import pytest
from aetcd import rpc

from kukeon.api import Kind
from tests.integration.daemon.test_unreadable_cells import MALFORMED, put_raw, until

from .conftest import Fleet

pytestmark = pytest.mark.integration


async def _said(fleet: Fleet, name: str) -> str:
    """The message of node ``name``'s CellDocumentsUnreadable condition when True."""
    node = await fleet.node(name)
    for condition in node.status.conditions:
        if condition.type == "CellDocumentsUnreadable" and condition.status == "True":
            return condition.message or ""
    return ""


async def test_the_runner_and_the_leader_report_an_unreadable_cell(fleet: Fleet) -> None:
    for index in range(2):
        await fleet.add_node(index)
    leader = await fleet.leader()
    (runner,) = [name for name in fleet.names if name != leader]
    await fleet.hierarchy()
    await fleet.apply(fleet.cell_doc("runs", nodeName=runner))
    await fleet.wait_for(Kind.CELL, fleet.cell_key("runs"), state="Ready")
    runs = fleet.registry.key_for(Kind.CELL, fleet.cell_key("runs"))
    nowhere = fleet.registry.key_for(Kind.CELL, fleet.cell_key("nowhere"))
    try:
        await put_raw(fleet.registry, runs, MALFORMED)
        await put_raw(fleet.registry, nowhere, MALFORMED)

        async def leader_says_both() -> bool:
            said = await _said(fleet, leader)
            return runs in said and nowhere in said

        async def runner_says_its_own() -> bool:
            return runs in await _said(fleet, runner)

        await until(leader_says_both)
        await until(runner_says_its_own)
        # Looked at since (every 2 s): the runner never names the cell it does not run.
        await asyncio.sleep(3)
        said = await _said(fleet, runner)
        assert nowhere not in said, said
        assert "1 document(s) of cells this node runs (2 in etcd in all)" in said, said
    finally:  # the realm's teardown deletes documents it can read
        client = fleet.registry.client
        for key in (runs, nowhere):
            await client.kvstub.DeleteRange(
                rpc.DeleteRangeRequest(key=key.encode()), metadata=client.metadata
            )
