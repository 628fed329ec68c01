"""Through the API, a write that would leave no room for the status kukeond writes is a 422
naming its size and the limit (``apiserver.statusroom``); before, such a cell was stored
and never got a status (Pending with no reason). A document stored before the bound stays
readable, writable without growing, and deletable."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from kukeon.api import Cell, parse_resource
from kukeon.apiserver.statusroom import SPEC_MAX_BYTES, STATUS_RESERVE_BYTES
from kukeon.client.mergepatch import MERGE_PATCH_CONTENT_TYPE
from kukeon.store import MAX_DOCUMENT_BYTES, Registry
from tests.integration.apiserver.conftest import cell_doc, create_tree

pytestmark = pytest.mark.integration

STACK = "/apis/kukeon.io/v1beta1/realms/team/spaces/s/stacks/st"
CELLS = f"{STACK}/cells"
PATCH = {"Content-Type": MERGE_PATCH_CONTENT_TYPE}


def _env(total: int, letter: str = "x") -> list[str]:
    """Environment strings of ``total`` bytes in all, each under the 128 KiB exec takes."""
    sizes = [100_000] * (total // 100_000) + [total % 100_000]
    return [f"E{i}={letter * size}" for i, size in enumerate(sizes)]


def _big_cell(name: str, env_bytes: int) -> dict[str, Any]:
    document = cell_doc(name)
    document["spec"]["containers"][0]["env"] = _env(env_bytes)
    return document


async def _refused(response: aiohttp.ClientResponse) -> str:
    assert response.status == 422, (await response.text())[:500]
    status = await response.json()
    assert status["reason"] == "Invalid"
    message: str = status["message"]
    assert f"{SPEC_MAX_BYTES}-byte limit" in message
    assert str(STATUS_RESERVE_BYTES) in message
    return message


async def test_a_write_leaving_no_room_for_the_status_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    await create_tree(http)
    near = _big_cell("near", MAX_DOCUMENT_BYTES - 4096)  # under the store's own limit
    for query in ("?dryRun=All", ""):
        async with http.post(f"{CELLS}{query}", json=near) as response:
            await _refused(response)
    async with http.get(f"{CELLS}/near") as response:
        assert response.status == 404  # nothing stored
    async with http.post(CELLS, json=_big_cell("web", SPEC_MAX_BYTES - 8192)) as response:
        assert response.status == 201, (await response.text())[:500]
    # Growing it past the bound: by a patch, by a replace.
    container = {**cell_doc("web")["spec"]["containers"][0], "env": _env(1_000_000, "y")}
    grown = {"spec": {"containers": [container]}}
    async with http.patch(f"{CELLS}/web", json=grown, headers=PATCH) as response:
        await _refused(response)
    async with http.put(f"{CELLS}/web", json={**near, "metadata": {"name": "web"}}) as response:
        await _refused(response)
    # A CellSet's template is counted twice: 600 KB fit the store once, not twice.
    cellset = {
        "kind": "CellSet",
        "metadata": {"name": "set"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "set"}},
            "template": {
                "metadata": {"labels": {"app": "set"}},
                "spec": {"containers": [{"id": "main", "image": "busybox", "env": _env(600_000)}]},
            },
        },
    }
    async with http.post(f"{STACK}/cellsets", json=cellset) as response:
        assert "template counted twice" in await _refused(response)


async def test_a_document_stored_before_the_bound_stays_usable(
    http: aiohttp.ClientSession, registry: Registry
) -> None:
    await create_tree(http)
    stored = parse_resource(_big_cell("old", MAX_DOCUMENT_BYTES - 4096))
    assert isinstance(stored, Cell)
    stored.spec.realm_id, stored.spec.space_id, stored.spec.stack_id = "team", "s", "st"
    await registry.create(stored)  # as a server without the bound took it
    async with http.get(f"{CELLS}/old") as response:
        assert response.status == 200, (await response.text())[:500]
    label = {"metadata": {"labels": {"tier": "old"}}}
    async with http.patch(f"{CELLS}/old", json=label, headers=PATCH) as response:
        await _refused(response)  # it would grow
    smaller = {"spec": {"containers": [{**cell_doc("old")["spec"]["containers"][0], "env": []}]}}
    async with http.patch(f"{CELLS}/old", json=smaller, headers=PATCH) as response:
        assert response.status == 200, (await response.text())[:500]
    async with http.patch(f"{CELLS}/old", json=label, headers=PATCH) as response:
        assert response.status == 200, await response.text()  # room again
    async with http.delete(f"{CELLS}/old") as response:
        assert response.status == 200, (await response.text())[:500]
