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
from kukeon.store import AlreadyExists, InvalidStoredDocument, Registry

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


class ExistingNodeStore(NodeStore):
    """The document is there (a create is refused) with labels of its own."""

    async def create(self, obj: Node) -> Node:
        raise AlreadyExists(f"Node {obj.metadata.name} exists")

    async def get(self, kind: Kind, key: tuple[str, ...]) -> Node:
        node = await super().get(kind, key)
        labelled = [w for w in self.writes if w.metadata.labels]
        labels = labelled[-1].metadata.labels if labelled else {"mine": "kept"}
        return node.model_copy(
            update={"metadata": node.metadata.model_copy(update={"labels": labels})}
        )


async def test_a_start_meeting_an_undecodable_node_document_goes_on(tmp_path: Path) -> None:
    """The registration at start read the document to merge the configured labels and
    raised (the start failed naming the key). Now it records why for /readyz, writes
    nothing, and the configured labels are merged once the document can be read."""
    store = ExistingNodeStore()
    agent = node.NodeAgent(
        registry=cast(Registry, store),
        config=DaemonConfig(node_name="n1", state_dir=tmp_path, node_labels={"zone": "a"}),
        containerd=None,
    )
    await agent._register()  # what start() does first
    await agent._beat_or_wait_for_document()  # and after taking its lease
    assert store.writes == []
    status, text = await readyz(store, agent)
    assert status == 503
    assert f"Node/n1 at {KEY} (revision 42) cannot be decoded" in text

    store.repaired = True
    await agent.beat()
    assert [w.metadata.labels for w in store.writes] == [
        {"mine": "kept", "zone": "a"},  # the labels, owed since the start
        {"mine": "kept", "zone": "a"},  # the status
    ]
    assert agent.beats == 1
    assert (await readyz(store, agent))[0] == 200
