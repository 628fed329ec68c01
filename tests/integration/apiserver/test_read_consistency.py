"""Reads from the watch cache are never older than a write acknowledged before they were sent.

Every test writes on one connection and reads on another (a different client), at once,
many times and concurrently: the watch cache (``kukeon.apiserver.watchcache``) answers
most of these reads, and must never answer one from before the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind, parse_resource
from kukeon.store import Registry
from tests.integration.apiserver.conftest import Api, cell_doc, realm_doc, space_doc, stack_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/default/spaces/default/stacks/default/cells"


@pytest.fixture
async def reader(api: Api) -> AsyncIterator[aiohttp.ClientSession]:
    """A second client on the unix socket: its own connections."""
    connector = aiohttp.UnixConnector(path=str(api.socket))
    async with aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as session:
        yield session


async def _json(response: aiohttp.ClientResponse, code: int) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == code, body
    return body


async def _hierarchy(http: aiohttp.ClientSession) -> None:
    for path, doc in (
        (f"{V}/realms", realm_doc("default")),
        (f"{V}/realms/default/spaces", space_doc("default")),
        (f"{V}/realms/default/spaces/default/stacks", stack_doc("default")),
    ):
        await _json(await http.post(path, json=doc), 201)


async def _names(session: aiohttp.ClientSession, **params: str) -> set[str]:
    listed = await _json(await session.get(CELLS, params=params), 200)
    return {item["metadata"]["name"] for item in listed["items"]}


async def test_read_your_writes_from_another_connection_under_concurrency(
    http: aiohttp.ClientSession, reader: aiohttp.ClientSession
) -> None:
    await _hierarchy(http)

    async def one_life(worker: int) -> None:
        for round_ in range(8):
            name = f"w{worker}-{round_}"
            created = await _json(await http.post(CELLS, json=cell_doc(name, mark=name)), 201)
            got = await _json(await reader.get(f"{CELLS}/{name}"), 200)
            assert got["metadata"]["uid"] == created["metadata"]["uid"]
            assert name in await _names(reader)
            assert await _names(reader, labelSelector=f"mark={name}") == {name}
            listed = await _json(await reader.get(CELLS), 200)
            assert int(listed["metadata"]["resourceVersion"]) >= int(
                created["metadata"]["resourceVersion"]
            )

            got["metadata"]["labels"]["round"] = str(round_)
            replaced = await _json(await http.put(f"{CELLS}/{name}", json=got), 200)
            again = await _json(await reader.get(f"{CELLS}/{name}"), 200)
            assert again["metadata"]["resourceVersion"] == replaced["metadata"]["resourceVersion"]
            assert again["metadata"]["labels"]["round"] == str(round_)

            await _json(await http.delete(f"{CELLS}/{name}"), 200)
            await _json(await reader.get(f"{CELLS}/{name}"), 404)
            assert name not in await _names(reader)

    await asyncio.gather(*(one_life(worker) for worker in range(6)))


async def test_a_write_through_the_registry_is_seen_by_the_next_read(
    api: Api, http: aiohttp.ClientSession, reader: aiohttp.ClientSession
) -> None:
    """Controllers write through the registry, not the API: the same promise holds."""
    await _hierarchy(http)
    registry: Registry = api.registry
    for index in range(20):
        name = f"direct{index}"
        await registry.create(parse_resource({**cell_doc(name), "spec": _cell_spec()}))
        await _json(await reader.get(f"{CELLS}/{name}"), 200)
        await registry.delete(Kind.CELL, ("default", "default", "default", name))
        await _json(await reader.get(f"{CELLS}/{name}"), 404)


async def test_writes_of_other_kinds_do_not_hide_or_stall_reads(
    api: Api,
    http: aiohttp.ClientSession,
    reader: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _hierarchy(http)
    await _json(await http.post(CELLS, json=cell_doc("steady")), 201)
    etcd_reads: list[Kind] = []
    get = api.registry.get

    async def counted_get(kind: Kind, key: tuple[str, ...]) -> Any:
        etcd_reads.append(kind)
        return await get(kind, key)

    monkeypatch.setattr(api.registry, "get", counted_get)
    for index in range(10):
        # Realms written between the cell reads: the cells' cache must learn it is current.
        await _json(await http.post(f"{V}/realms", json=realm_doc(f"other{index}")), 201)
        async with asyncio.timeout(0.5):  # far below the cache's wait (1 s)
            await _json(await reader.get(f"{CELLS}/steady"), 200)
    names = await _names(reader)
    assert names == {"steady"}
    assert Kind.CELL not in etcd_reads  # every cell read came from the watch cache


def _cell_spec() -> dict[str, Any]:
    return {
        "realmId": "default",
        "spaceId": "default",
        "stackId": "default",
        "containers": [{"id": "main", "image": "busybox:latest", "root": True}],
    }


async def test_reads_racing_writes_never_go_back(
    api: Api, http: aiohttp.ClientSession, reader: aiohttp.ClientSession
) -> None:
    """Readers polling while a writer bumps a counter: each sees it only grow, and the last."""
    await _hierarchy(http)
    await _json(await http.post(CELLS, json=cell_doc("counter", n="0")), 201)
    key = ("default", "default", "default", "counter")
    done = asyncio.Event()
    writes = 40

    async def write() -> None:
        current = await api.registry.get(Kind.CELL, key)
        for n in range(1, writes + 1):
            current.metadata.labels = {"n": str(n)}
            current = await api.registry.update(current)
        done.set()

    async def read(session: aiohttp.ClientSession) -> None:
        seen = 0
        while True:
            finished = done.is_set()
            got = await _json(await session.get(f"{CELLS}/counter"), 200)
            value = int(got["metadata"]["labels"]["n"])
            assert value >= seen, (value, seen)
            seen = value
            if finished:
                assert value == writes  # read after the last write was acknowledged
                return

    async with asyncio.timeout(60):
        await asyncio.gather(write(), read(reader), read(http), read(reader))


async def test_kind_state_counts_every_key_and_sees_writes_after_a_revision(
    api: Api, http: aiohttp.ClientSession
) -> None:
    """What the watch cache relies on from etcd: the count is not cut by filter or limit."""
    await _hierarchy(http)
    for name in ("s1", "s2", "s3"):
        await _json(await http.post(CELLS, json=cell_doc(name)), 201)
    registry: Registry = api.registry
    before = await registry.current_revision()
    state = await registry.kind_state(Kind.CELL, before)
    assert (state.keys, state.changed_since) == (3, False)
    assert state.revision == before

    got = await registry.get(Kind.CELL, ("default", "default", "default", "s2"))
    got.metadata.labels = {"touched": "yes"}
    await registry.update(got)
    await _json(await http.post(f"{V}/realms", json=realm_doc("elsewhere")), 201)
    state = await registry.kind_state(Kind.CELL, before)
    assert (state.keys, state.changed_since) == (3, True)
    assert state.revision > before

    after = state.revision
    await registry.delete(Kind.CELL, ("default", "default", "default", "s3"))
    state = await registry.kind_state(Kind.CELL, after)
    assert (state.keys, state.changed_since) == (2, False)  # a delete shows in the count
