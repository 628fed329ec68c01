"""A node whose own Node document cannot be decoded says so on /readyz, and never
overwrites it.

Before, its heartbeat failed at every beat (logged once a minute, counted), the scheduler
marked it NotReady and placed nothing there, and /readyz still said ok.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from kukeon.api import Kind, Node, ObjectMeta
from kukeon.apiserver.app import _readyz_handler
from kukeon.daemon import node
from kukeon.daemon.config import DaemonConfig
from kukeon.store import InvalidStoredDocument, Registry

KEY = "/kukeon/registry/nodes/n1"


class NodeStore:
    """The node's document: undecodable until ``repaired``; every write recorded."""

    key_prefix = "/kukeon"

    def __init__(self) -> None:
        self.repaired = False
        self.writes: list[Node] = []

    async def get(self, kind: Kind, key: tuple[str, ...]) -> Node:
        if not self.repaired:
            raise InvalidStoredDocument(
                f"Node {key[-1]}: invalid",
                kind=kind.value,
                name=key[-1],
                key=KEY,
                revision=42,
                reason="not JSON: Expecting value: line 1 column 1 (char 0)",
            )
        return Node(metadata=ObjectMeta(name=key[-1], resource_version="43"))

    async def update_status(self, obj: Node) -> Node:
        self.writes.append(obj)
        return obj

    async def update(self, obj: Node) -> Node:
        self.writes.append(obj)
        return obj

    async def current_revision(self) -> int:
        return 43


async def readyz(store: NodeStore, agent: node.NodeAgent) -> tuple[int, str]:
    handler = _readyz_handler(
        cast(Any, store),
        cast(Any, SimpleNamespace(request_timeout=5.0)),
        {"node": agent.document_ready},
    )
    response = await handler(make_mocked_request("GET", "/readyz"))
    assert isinstance(response, web.Response)
    assert response.text is not None
    return response.status, response.text


async def test_an_undecodable_node_document_fails_readyz_and_is_not_overwritten(
    tmp_path: Path,
) -> None:
    store = NodeStore()
    agent = node.NodeAgent(
        registry=cast(Registry, store),
        config=DaemonConfig(node_name="n1", state_dir=tmp_path),
        containerd=None,
    )
    assert (await readyz(store, agent))[0] == 200
    with pytest.raises(InvalidStoredDocument):
        await agent.beat()
    assert store.writes == [], "a document it cannot read is not overwritten"
    status, text = await readyz(store, agent)
    assert status == 503
    line = next(line for line in text.splitlines() if line.startswith("[-]node"))
    assert "NodeDocumentUnreadable" in line
    assert f"Node/n1 at {KEY} (revision 42) cannot be decoded: not JSON" in line
    assert "[+]etcd ok" in text

    store.repaired = True  # fixed (or deleted and registered again)
    await agent.beat()
    assert len(store.writes) == 1
    assert agent.beats == 1
    assert await readyz(store, agent) == (200, "[+]etcd ok\n[+]node ok\nreadyz check passed\n")
