"""Watch streams: initial state, resume from a resourceVersion, bookmarks, 410 on compaction."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.store import Registry
from tests.integration.apiserver.conftest import Api, Certs, realm_doc, running_api

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


async def _events(
    response: aiohttp.ClientResponse, count: int, *, skip_bookmarks: bool = True
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(events) < count:
            line = await response.content.readline()
            assert line, f"stream ended after {events}"
            event = json.loads(line)
            if skip_bookmarks and event["type"] == "BOOKMARK":
                continue
            events.append(event)
    return events


async def test_watch_starts_with_state_then_follows(http: aiohttp.ClientSession) -> None:
    await http.post(f"{V}/realms", json=realm_doc("a"))
    async with http.get(f"{V}/realms", params={"watch": "true"}) as response:
        assert response.status == 200
        (added,) = await _events(response, 1)
        assert added["type"] == "ADDED"
        assert added["object"]["metadata"]["name"] == "a"
        await http.post(f"{V}/realms", json=realm_doc("b"))
        await http.patch(
            f"{V}/realms/b",
            data=b'{"metadata":{"labels":{"x":"1"}}}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
        await http.delete(f"{V}/realms/b")
        events = await _events(response, 2)
        assert [e["type"] for e in events] == ["ADDED", "MODIFIED"]
        # deletion goes through a finalizer release: a MODIFIED may precede DELETED
        rest = await _events(response, 1)
        while rest[-1]["type"] != "DELETED":
            rest += await _events(response, 1)
        assert rest[-1]["object"]["metadata"]["name"] == "b"


async def test_watch_resumes_from_resource_version(http: aiohttp.ClientSession) -> None:
    first = await (await http.post(f"{V}/realms", json=realm_doc("one"))).json()
    rv = first["metadata"]["resourceVersion"]
    await http.post(f"{V}/realms", json=realm_doc("two", tier="x"))
    await http.post(f"{V}/realms", json=realm_doc("three"))
    params = {"watch": "1", "resourceVersion": rv}
    async with http.get(f"{V}/realms", params=params) as response:
        events = await _events(response, 2)
    assert [e["object"]["metadata"]["name"] for e in events] == ["two", "three"]
    assert all(e["type"] == "ADDED" for e in events)
    selected = {**params, "labelSelector": "tier=x"}
    async with http.get(f"{V}/realms", params=selected) as response:
        (only,) = await _events(response, 1)
    assert only["object"]["metadata"]["name"] == "two"
    named = {**params, "fieldSelector": "metadata.name=three"}
    async with http.get(f"{V}/realms", params=named) as response:
        (only,) = await _events(response, 1)
    assert only["object"]["metadata"]["name"] == "three"


async def test_idle_watch_gets_bookmarks_with_fresh_revisions(http: aiohttp.ClientSession) -> None:
    await http.post(f"{V}/realms", json=realm_doc("r"))
    async with http.get(f"{V}/realms/r/spaces", params={"watch": "true"}) as response:
        # a write elsewhere moves the revision; the bookmark must follow it
        made = await (await http.post(f"{V}/realms", json=realm_doc("other"))).json()
        async with asyncio.timeout(10):
            while True:
                event = json.loads(await response.content.readline())
                assert event["type"] == "BOOKMARK"
                assert event["object"]["kind"] == "Space"
                if int(event["object"]["metadata"]["resourceVersion"]) >= int(
                    made["metadata"]["resourceVersion"]
                ):
                    break


async def test_watch_timeout_seconds_ends_the_stream(http: aiohttp.ClientSession) -> None:
    async with http.get(
        f"{V}/cells", params={"watch": "true", "timeoutSeconds": "0.3"}
    ) as response:
        async with asyncio.timeout(5):
            body = await response.read()
    assert b"ERROR" not in body


async def test_bad_resource_version_is_400(http: aiohttp.ClientSession) -> None:
    response = await http.get(f"{V}/realms", params={"watch": "true", "resourceVersion": "x"})
    assert response.status == 400


async def test_compacted_resource_version_is_410(
    private_registry: Registry, certs: Certs, tokens_file: Path
) -> None:
    async with running_api(private_registry, certs, tokens_file) as api:
        connector = aiohttp.UnixConnector(path=str(api.socket))
        async with aiohttp.ClientSession(connector=connector, base_url="http://k") as http:
            first = await (await http.post(f"{V}/realms", json=realm_doc("r0"))).json()
            old = first["metadata"]["resourceVersion"]
            for index in range(1, 6):
                await http.post(f"{V}/realms", json=realm_doc(f"r{index}"))
            await private_registry.client.compact(
                await private_registry.current_revision(), physical=True
            )
            from kukeon.api import Kind
            from kukeon.client.apiclient import ApiClient, ApiRequestError

            async with ApiClient(server=f"unix://{api.socket}") as client:
                with pytest.raises(ApiRequestError) as gone:
                    async for _ in client.watch(Kind.REALM, resource_version=int(old)):
                        pass
                assert gone.value.code == 410
            response = await http.get(
                f"{V}/realms", params={"watch": "true", "resourceVersion": old}
            )
            body = await response.json()
            assert response.status == 410, body
            assert body["kind"] == "Status"
            assert body["code"] == 410
            assert body["reason"] == "Gone"
            # the relist protocol works: list, then watch from the list's revision
            listing = await (await http.get(f"{V}/realms")).json()
            assert len(listing["items"]) == 6
            params = {"watch": "true", "resourceVersion": listing["metadata"]["resourceVersion"]}
            async with http.get(f"{V}/realms", params=params) as stream:
                assert stream.status == 200
                await http.post(f"{V}/realms", json=realm_doc("after"))
                (event,) = await _events(stream, 1)
                assert event["object"]["metadata"]["name"] == "after"


async def test_server_stop_ends_open_watches(api: Api, http: aiohttp.ClientSession) -> None:
    response = await http.get(f"{V}/realms", params={"watch": "true"})
    assert response.status == 200
    async with asyncio.timeout(8):
        await api.runner.stop()
        await response.read()
