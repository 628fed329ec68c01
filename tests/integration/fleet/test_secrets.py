"""A Secret sealed through one node opens on another: the fleet shares one key file."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind, parse_resource

from .conftest import Fleet

pytestmark = pytest.mark.integration


async def test_a_cell_on_another_node_gets_the_value_sealed_through_the_first(
    fleet: Fleet,
) -> None:
    for index in range(2):
        await fleet.add_node(index)
    await fleet.hierarchy()
    first, second = fleet.names
    sealer = fleet.nodes[first].daemon
    assert sealer is not None
    assert sealer.registry is not None
    marker = f"fleet-secret-{secrets.token_hex(8)}"
    await sealer.registry.create(
        parse_resource(
            {
                "apiVersion": "kukeon.io/v1beta1",
                "kind": "Secret",
                "metadata": {"name": "api", "realm": fleet.realm},
                "stringData": {"token": marker},
            }
        )
    )
    document = fleet.cell_doc("uses-secret", nodeName=second)
    document["spec"]["containers"][0]["secrets"] = [
        {"name": "API_TOKEN", "secretRef": {"name": "api", "key": "token"}}
    ]
    await fleet.apply(document)
    ready = await fleet.wait_for(Kind.CELL, fleet.cell_key("uses-secret"), state="Ready")
    assert isinstance(ready, Cell)
    assert ready.status.node_name == second
    pid = ready.status.containers[0].pid
    assert pid
    environ = (await asyncio.to_thread(Path(f"/proc/{pid}/environ").read_bytes)).split(b"\0")
    assert f"API_TOKEN={marker}".encode() in environ
