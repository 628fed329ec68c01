"""Requests kube-apiserver refuses, refused the same way over a real registry (etcd).

- a GET, LIST or WATCH from a resourceVersion newer than etcd's waits up to 3 s for it,
  then is ``504 Timeout`` with a ``ResourceVersionTooLarge`` cause and
  ``retryAfterSeconds: 1`` (it used to answer current data as that version, and a watch
  waited silently until its timeout); a revision reached within the wait is answered;
- a 404 shows the path as sent (``%2F`` stays escaped, not decoded into a valid-looking
  path);
- a body whose Content-Type is neither JSON nor YAML is a 415 and nothing is written (it
  used to be read as JSON all the same).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.store.events import EventStore
from tests.integration.apiserver.conftest import Api, realm_doc
from tests.integration.apiserver.test_events import events_api  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


async def _json(response: aiohttp.ClientResponse, code: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    return body


async def test_reads_from_a_revision_etcd_has_not_reached_are_504_too_large(
    api: Api, http: aiohttp.ClientSession
) -> None:
    await _json(await http.post(f"{V}/realms", json=realm_doc("rv")), 201)
    current = await api.registry.current_revision()
    wanted = current + 1000
    params = {"resourceVersion": str(wanted)}
    started = time.monotonic()
    answers = await asyncio.gather(
        http.get(f"{V}/realms", params=params),
        http.get(f"{V}/realms/rv", params=params),
        http.get(f"{V}/realms", params={**params, "watch": "true"}),
        http.get(f"{V}/realms/rv/spaces/-/stacks/-/secrets", params=params),  # not cached
    )
    assert time.monotonic() - started >= 2.5  # each waited (~3 s) for etcd to get there
    for response in answers:
        status = await _json(response, 504)
        assert status["reason"] == "Timeout"
        assert f"Too large resource version: {wanted}, current: {current}" in status["message"]
        assert status["details"]["retryAfterSeconds"] == 1
        assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
        assert status["details"]["causes"][0]["field"] == "resourceVersion"
        assert response.headers["Retry-After"] == "1"


async def test_events_from_a_revision_etcd_has_not_reached_are_504_too_large(
    events_api: tuple[Api, EventStore],  # noqa: F811 - the fixture imported above
) -> None:
    api, store = events_api
    wanted = await store.current_revision() + 1000
    connector = aiohttp.UnixConnector(path=str(api.socket))
    async with aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as http:
        answers = await asyncio.gather(
            http.get(f"{V}/events", params={"resourceVersion": str(wanted)}),
            http.get(f"{V}/realms/r/events", params={"resourceVersion": str(wanted), "watch": "1"}),
        )
        for response in answers:
            status = await _json(response, 504)
            assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


async def test_a_revision_reached_during_the_wait_is_answered(
    api: Api, http: aiohttp.ClientSession
) -> None:
    wanted = await api.registry.current_revision() + 1

    async def write_soon() -> None:
        await asyncio.sleep(0.5)
        await _json(await http.post(f"{V}/realms", json=realm_doc("later")), 201)

    writer = asyncio.create_task(write_soon())
    answer = await http.get(f"{V}/realms", params={"resourceVersion": str(wanted)})
    listed = await _json(answer, 200)
    await writer
    assert int(listed["metadata"]["resourceVersion"]) >= wanted
    assert "later" in {item["metadata"]["name"] for item in listed["items"]}


async def test_an_unknown_path_is_shown_as_it_was_sent(http: aiohttp.ClientSession) -> None:
    status = await _json(await http.get("/apis/kukeon.io%2Fv1beta1/realms"), 404)
    assert status["message"] == "no such API path: /apis/kukeon.io%2Fv1beta1/realms"


@pytest.mark.parametrize("content_type", ["text/plain", None])
async def test_a_body_that_is_not_json_or_yaml_is_a_415(
    api: Api, http: aiohttp.ClientSession, content_type: str | None
) -> None:
    body = b'{"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "plain"}}'
    headers = {} if content_type is None else {"Content-Type": content_type}
    skip = ["Content-Type"] if content_type is None else []
    for method, path in (("POST", f"{V}/realms"), ("PUT", f"{V}/realms/plain")):
        response = await http.request(
            method, path, data=body, headers=headers, skip_auto_headers=skip
        )
        status = await _json(response, 415)
        assert status["reason"] == "UnsupportedMediaType"
        assert status["details"]["causes"][0]["field"] == "Content-Type"
    realms = (await api.registry.list(Kind.REALM)).items
    assert "plain" not in {realm.metadata.name for realm in realms}
