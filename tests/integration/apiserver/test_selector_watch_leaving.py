"""A watch with a label selector, started as kukectl's ``get -w`` and reflectors start it
(a LIST, then a WATCH from the list's resourceVersion), sees an object that stops matching
as DELETED and one that starts matching as ADDED, as kube-apiserver's watch cache says
them; before, a cell relabelled out of ``rank>4`` sent nothing and stayed with the client,
and a Secret (sealed at rest: no decoded version before is ever held) still does not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from kukeon.store import Registry
from tests.integration.apiserver.conftest import cell_doc, realm_doc, space_doc, stack_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/default/spaces/default/stacks/default/cells"
SECRETS = f"{V}/realms/default/spaces/-/stacks/-/secrets"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def registry(sealing_registry: Registry) -> Registry:
    """The API's registry holds a keyring, as kukeond's does: Secrets can be written."""
    return sealing_registry


async def _ok(response: aiohttp.ClientResponse, code: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    return body


async def _relabel(
    http: aiohttp.ClientSession, name: str, rank: str, collection: str = CELLS
) -> None:
    patch = {"metadata": {"labels": {"rank": rank}}}
    await _ok(await http.patch(f"{collection}/{name}", data=json.dumps(patch), headers=MERGE))


async def _listed_then_watched(
    http: aiohttp.ClientSession, collection: str, changes: list[tuple[str, str]], wanted: int
) -> list[tuple[str, str, str]]:
    """``rank>4`` listed, then watched from the list's revision while ``changes`` (name,
    new rank) are made: the first ``wanted`` events (type, name, rank)."""
    listed = await _ok(await http.get(collection, params={"labelSelector": "rank>4"}))
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a"]
    params = {
        "labelSelector": "rank>4",
        "watch": "1",
        "resourceVersion": listed["metadata"]["resourceVersion"],
        "timeoutSeconds": "5",
    }
    async with http.get(collection, params=params) as watch:
        assert watch.status == 200
        for name, rank in changes:
            await _relabel(http, name, rank, collection)
        seen: list[tuple[str, str, str]] = []
        async with asyncio.timeout(15):  # the server ends the stream at 5 s
            while len(seen) < wanted:
                line = await watch.content.readline()
                if not line:  # the stream's time is up: what came is all there is
                    break
                event = json.loads(line)
                if event["type"] != "BOOKMARK":
                    labels = event["object"]["metadata"]["labels"]
                    seen.append(
                        (event["type"], event["object"]["metadata"]["name"], labels["rank"])
                    )
    return seen


# leaves; joins; stays; still out
CHANGES = [("a", "1"), ("b", "9"), ("b", "8"), ("a", "2")]
TOLD = [("DELETED", "a", "1"), ("ADDED", "b", "9"), ("MODIFIED", "b", "8")]


async def test_a_listed_then_watched_selection_is_told_of_leaving_and_joining(
    http: aiohttp.ClientSession,
) -> None:
    await _ok(await http.post(f"{V}/realms", json=realm_doc("default")), 201)
    await _ok(await http.post(f"{V}/realms/default/spaces", json=space_doc("default")), 201)
    stacks = f"{V}/realms/default/spaces/default/stacks"
    await _ok(await http.post(stacks, json=stack_doc("default")), 201)
    await _ok(await http.post(CELLS, json=cell_doc("a", rank="5")), 201)
    await _ok(await http.post(CELLS, json=cell_doc("b", rank="1")), 201)
    assert await _listed_then_watched(http, CELLS, CHANGES, len(TOLD)) == TOLD


async def test_a_listed_then_watched_selection_of_secrets_is_told_of_leaving(
    http: aiohttp.ClientSession,
) -> None:
    """A Secret's versions are never kept decoded (their values are opened): the version
    before is read, its values left sealed, from the one etcd sends with the change."""
    await _ok(await http.post(f"{V}/realms", json=realm_doc("default")), 201)
    for name, rank in (("a", "5"), ("b", "1")):
        secret = {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Secret",
            "metadata": {"name": name, "labels": {"rank": rank}},
            "stringData": {"token": "t-" + name},
        }
        await _ok(await http.post(SECRETS, json=secret), 201)
    assert await _listed_then_watched(http, SECRETS, CHANGES, len(TOLD)) == TOLD
