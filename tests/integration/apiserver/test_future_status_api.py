"""The API and a status another (newer) kukeond wrote with enum values this one does not
know: read, listed and watched as written; a spec enum it does not know is a 422 naming
the field, on create and on update."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind
from tests.integration.apiserver.conftest import Api, cell_doc, realm_doc, space_doc, stack_doc
from tests.integration.store.test_invalid_documents import put_raw

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/default/spaces/default/stacks/default/cells"


async def _answer(response: aiohttp.ClientResponse, code: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    return body


async def _hierarchy(http: aiohttp.ClientSession) -> None:
    await _answer(await http.post(f"{V}/realms", json=realm_doc("default")), 201)
    await _answer(await http.post(f"{V}/realms/default/spaces", json=space_doc("default")), 201)
    stacks = f"{V}/realms/default/spaces/default/stacks"
    await _answer(await http.post(stacks, json=stack_doc("default")), 201)


def _future(document: dict[str, Any]) -> dict[str, Any]:
    document["status"] = {
        **document.get("status", {}),
        "state": "Hibernating",
        "containers": [{"id": "main", "state": "Checkpointing"}],
    }
    return document


async def test_unknown_status_values_are_read_listed_and_watched(
    api: Api, http: aiohttp.ClientSession
) -> None:
    await _hierarchy(http)
    created = await _answer(await http.post(CELLS, json=cell_doc("web")), 201)
    since = created["metadata"]["resourceVersion"]
    lines: list[dict[str, Any]] = []

    async def follow() -> None:
        async with http.get(f"{CELLS}?watch=true&resourceVersion={since}") as response:
            assert response.status == 200
            async for raw in response.content:
                line = json.loads(raw)
                if line["type"] != "BOOKMARK":
                    lines.append(line)
                    return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    key = api.registry.key_for(Kind.CELL, ("default", "default", "default", "web"))
    stored = await _answer(await http.get(f"{CELLS}/web"), 200)
    revision = await put_raw(api.registry, key, json.dumps(_future(stored)).encode())
    try:
        async with asyncio.timeout(10):
            await watcher
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    [event] = lines
    assert event["type"] == "MODIFIED"
    assert event["object"]["status"]["state"] == "Hibernating"
    got = await _answer(await http.get(f"{CELLS}/web"), 200)
    assert got["metadata"]["resourceVersion"] == str(revision)
    assert got["status"]["state"] == "Hibernating"
    assert got["status"]["containers"][0]["state"] == "Checkpointing"
    listed = await _answer(await http.get(CELLS), 200)
    assert [item["status"]["state"] for item in listed["items"]] == ["Hibernating"]


async def test_a_spec_enum_it_does_not_know_is_refused_naming_the_field(
    http: aiohttp.ClientSession,
) -> None:
    await _hierarchy(http)
    doc = cell_doc("strict")
    doc["spec"]["desiredState"] = "Hibernating"
    refused = await _answer(await http.post(CELLS, json=doc), 422)
    assert [cause["field"] for cause in refused["details"]["causes"]] == ["spec.desiredState"]

    created = await _answer(await http.post(CELLS, json=cell_doc("strict")), 201)
    created["spec"]["containers"][0]["restartPolicy"] = "Sometimes"
    refused = await _answer(await http.put(f"{CELLS}/strict", json=created), 422)
    fields = [cause["field"] for cause in refused["details"]["causes"]]
    assert fields == ["spec.containers[0].restartPolicy"]
    # The same document with an unknown *status* word is taken (status is observed state).
    created["spec"]["containers"][0].pop("restartPolicy")
    await _answer(await http.put(f"{CELLS}/strict", json=_future(created)), 200)
