"""A watch with a label selector, started as kukectl's ``get -w`` and reflectors start it
(a LIST, then a WATCH from the list's resourceVersion), sees an object that stops matching
as DELETED and one that starts matching as ADDED, as kube-apiserver's watch cache says
them; before, a cell relabelled out of ``rank>4`` sent nothing and stayed with the client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.integration.apiserver.conftest import cell_doc, realm_doc, space_doc, stack_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/default/spaces/default/stacks/default/cells"
MERGE = {"Content-Type": "application/merge-patch+json"}


async def _ok(response: aiohttp.ClientResponse, code: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    return body


async def _relabel(http: aiohttp.ClientSession, name: str, rank: str) -> None:
    patch = {"metadata": {"labels": {"rank": rank}}}
    await _ok(await http.patch(f"{CELLS}/{name}", data=json.dumps(patch), headers=MERGE))


async def test_a_listed_then_watched_selection_is_told_of_leaving_and_joining(
    http: aiohttp.ClientSession,
) -> None:
    await _ok(await http.post(f"{V}/realms", json=realm_doc("default")), 201)
    await _ok(await http.post(f"{V}/realms/default/spaces", json=space_doc("default")), 201)
    stacks = f"{V}/realms/default/spaces/default/stacks"
    await _ok(await http.post(stacks, json=stack_doc("default")), 201)
    await _ok(await http.post(CELLS, json=cell_doc("a", rank="5")), 201)
    await _ok(await http.post(CELLS, json=cell_doc("b", rank="1")), 201)
    listed = await _ok(await http.get(CELLS, params={"labelSelector": "rank>4"}))
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a"]
    params = {
        "labelSelector": "rank>4",
        "watch": "1",
        "resourceVersion": listed["metadata"]["resourceVersion"],
        "timeoutSeconds": "5",
    }
    async with http.get(CELLS, params=params) as watch:
        assert watch.status == 200
        await _relabel(http, "a", "1")  # leaves
        await _relabel(http, "b", "9")  # joins
        await _relabel(http, "b", "8")  # stays
        await _relabel(http, "a", "2")  # still out
        seen: list[tuple[str, str, str]] = []
        async with asyncio.timeout(5):
            while len(seen) < 3:
                event = json.loads(await watch.content.readline())
                if event["type"] != "BOOKMARK":
                    labels = event["object"]["metadata"]["labels"]
                    seen.append(
                        (event["type"], event["object"]["metadata"]["name"], labels["rank"])
                    )
    assert seen == [("DELETED", "a", "1"), ("ADDED", "b", "9"), ("MODIFIED", "b", "8")]
