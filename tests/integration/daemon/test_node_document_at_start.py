"""kukeond starts with its own Node document undecodable in etcd, says so, and heals.

Before, the start failed (the registration read the document and raised
``InvalidStoredDocument`` naming the key): the node's API, /readyz and the cells it ran
were all gone until someone found the key. Now the start goes on as a running kukeond
does (6351529): /readyz fails its ``node`` check naming the key and the revision, a log
line says the same, the document is not written over, the node takes no new cell (the
scheduler does not see it) while the cells it runs stay converged, and fixing the key
brings the node back at its next heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import aiohttp
import pytest
from aetcd import rpc

from kukeon.api import Cell, Kind
from kukeon.controllers.scheduler import UNREADABLE_NODE
from kukeon.daemon.app import Daemon
from kukeon.store import Registry
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration


def truncated(valid: bytes) -> bytes:
    """Not JSON: a write cut short."""
    return valid[: len(valid) // 2]


def from_a_newer_kukeon(valid: bytes) -> bytes:
    """JSON the model refuses: a spec field this version does not know (spec is never
    forgiven, as a write would drop what a user wrote)."""
    document = json.loads(valid)
    document["spec"]["drainPriority"] = 3
    return json.dumps(document).encode()


async def raw_get(registry: Registry, key: str) -> tuple[bytes, int] | None:
    client = registry.client
    answer = await client.kvstub.Range(
        rpc.RangeRequest(key=key.encode()), timeout=10, metadata=client.metadata
    )
    if not answer.kvs:
        return None
    return answer.kvs[0].value, answer.kvs[0].mod_revision


async def raw_put(registry: Registry, key: str, value: bytes) -> None:
    client = registry.client
    await client.kvstub.Put(
        rpc.PutRequest(key=key.encode(), value=value), timeout=10, metadata=client.metadata
    )


async def readyz(k: Kukeond) -> tuple[int, str]:
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get("http://kukeond/readyz") as response,
    ):
        return response.status, await response.text()


@pytest.mark.parametrize("spoil", [truncated, from_a_newer_kukeon])
async def test_a_start_with_an_undecodable_node_document_serves_says_why_and_heals(
    kukeond: Kukeond,
    registry: Registry,
    caplog: pytest.LogCaptureFixture,
    spoil: Callable[[bytes], bytes],
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "running", [container(k, "main")]))
    running_key = cell_key(k, "running")
    before = await k.wait_for(Kind.CELL, running_key, state="Ready")
    assert isinstance(before, Cell)
    assert before.spec.node_name == k.config.node_name

    key = registry.key_for(Kind.NODE, (k.config.node_name,))
    stored = await raw_get(registry, key)
    assert stored is not None
    valid, _ = stored
    await k.daemon.stop()
    await raw_put(registry, key, spoil(valid))
    broken = await raw_get(registry, key)
    assert broken is not None
    revision = broken[1]

    caplog.set_level(logging.INFO, logger="kukeon.daemon.node")
    k.daemon = Daemon(k.config)
    await k.daemon.start()  # before: InvalidStoredDocument naming the key
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry

    status, text = await readyz(k)
    assert status == 503, text
    line = next(line for line in text.splitlines() if line.startswith("[-]node"))
    assert "NodeDocumentUnreadable" in line
    assert f"at {key} (revision {revision}) cannot be decoded" in line
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(key in m and f"revision {revision}" in m for m in said), said

    # The cells it ran stay converged; a new one is placed nowhere (no readable Node).
    await k.apply(cell_doc(k, "new", [container(k, "main")]))
    new_key = cell_key(k, "new")
    for _ in range(3):
        await asyncio.sleep(1.0)
        cell = await k.registry.get(Kind.CELL, new_key)
        assert isinstance(cell, Cell)
        assert cell.spec.node_name is None, "placed on a node whose Node cannot be read"
    # Its status names the node left out and why (before: "no node is registered").
    said_why = f"0/1 nodes are available: {k.config.node_name}: {UNREADABLE_NODE}"
    await k.wait_for(Kind.CELL, new_key, until=lambda c: c.status.message == said_why)
    after = await k.wait_for(Kind.CELL, running_key, state="Ready")
    assert after.status.model_dump(include={"containers"}) == before.status.model_dump(
        include={"containers"}
    ), "the running cell was restarted"
    assert await raw_get(registry, key) == broken, "overwritten"

    # Fixed: the new cell is placed here, and the next heartbeat (10 s at most: its retry
    # back-off) writes the Node again and clears /readyz's check.
    await raw_put(registry, key, valid)
    await k.wait_for(Kind.CELL, new_key, state="Ready", within=30)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (answer := await readyz(k))[0] != 200:
        assert loop.time() < deadline, answer
        await asyncio.sleep(0.2)
    # /readyz clears as soon as a beat reads the Node again, before that beat's write lands.
    while (fixed := await raw_get(registry, key)) is not None and fixed[0] == valid:
        assert loop.time() < deadline, "the heartbeat did not write it"
        await asyncio.sleep(0.2)
    assert fixed is not None
    assert any("can be read again" in r.getMessage() for r in caplog.records)
