"""A space whose per-node entries say more than its document can hold: what kukeond writes
of its status stays within the store's limit and says what it cut.

The entries come through the API's status subresource, as any client with write access
can send them (the every-route test's mutations did: its seed 33 left this space's
controller stuck): this node's entry Failed with a 700 kB message, four more nodes'
entries Failed with 20 kB each. The space controller copied the first failed node's
message whole into the top-level status: 1.4 MB, over the 1 MiB document limit, refused
at every pass with a traceback, and since that write comes first in each reconcile, the
node's teardown of the space never ran again.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from kukeon.api import Kind, Space
from kukeon.framework.statusbound import COPIED_CHARS, MESSAGE_CHARS
from kukeon.store import MAX_DOCUMENT_BYTES, WatchEvent
from tests.fixtures.kukeond import Kukeond

from .helpers import watching

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
OTHERS = [f"zz-lost-{i}" for i in range(4)]
"""Nodes that sort after this one's name, so the top level quotes this node's entry."""


def hostile_nodes(node: str) -> dict[str, dict[str, str]]:
    nodes = {node: {"state": "Failed", "reason": "Boom", "message": "x" * 700_000}}
    for other in OTHERS:
        nodes[other] = {"state": "Failed", "reason": "Boom", "message": "y" * 20_000}
    return nodes


def size(space: Space) -> int:
    return len(space.model_dump_json(by_alias=True, exclude_none=True).encode())


async def test_a_status_past_the_document_limit_is_written_cut_and_says_so(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    k = kukeond
    node = k.config.node_name
    assert node < OTHERS[0]
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
    await k.apply({"kind": "Space", "metadata": {"name": "s1"}, "spec": {"realmId": k.realm}})
    key = (k.realm, "s1")
    ready = await k.wait_for(Kind.SPACE, key, state="Ready")
    url = f"{API}/realms/{k.realm}/spaces/s1"
    versions: list[Space] = []
    cut_said = asyncio.Event()

    def each(event: WatchEvent) -> None:
        space = event.object
        if isinstance(space, Space) and space.metadata.name == "s1":
            versions.append(space)
            message = space.status.message or ""
            if message.startswith(f"node {node}: xxx") and "characters cut)" in message:
                cut_said.set()

    since = int(ready.metadata.resource_version or 0)
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with (
        watching(k, Kind.SPACE, (k.realm,), each, since=since),
        aiohttp.ClientSession(connector=connector) as http,
    ):
        patch = {"status": {"nodes": hostile_nodes(node)}}
        async with http.patch(
            f"{url}/status",
            data=json.dumps(patch).encode(),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as answer:
            assert answer.status == 200, await answer.text()
        # A change of its metadata runs the space's reconcile at once.
        poke = {"metadata": {"annotations": {"poke": "1"}}}
        async with http.patch(
            url, json=poke, headers={"Content-Type": "application/merge-patch+json"}
        ) as answer:
            assert answer.status == 200, await answer.text()
        try:
            await asyncio.wait_for(cut_said.wait(), timeout=30)
        except TimeoutError:
            last = versions[-1].status if versions else None
            raise AssertionError(
                f"no bounded status written; the last: {last and (last.reason, last.message)}"
            ) from None
        # Not stuck: the node tears its (cell-less) part of the space down and drops its entry.
        await k.wait_for(Kind.SPACE, key, until=lambda s: node not in s.status.nodes, within=30)
    said = next(s for s in versions if (s.status.message or "").startswith(f"node {node}: xxx"))
    message = said.status.message or ""
    assert len(message) < COPIED_CHARS + 200
    assert message.endswith(f"(also failed on {', '.join(OTHERS)})")
    assert said.status.reason == "Boom"
    for entry in said.status.nodes.values():
        assert entry.message is not None
        assert len(entry.message) <= MESSAGE_CHARS
        assert entry.message.endswith("more characters cut)")
    # Every version written fits the store (the hostile one the test wrote too).
    assert max(size(s) for s in versions) <= MAX_DOCUMENT_BYTES
    tracebacks = [r.getMessage()[:300] for r in caplog.records if r.exc_info is not None]
    assert not tracebacks, tracebacks
