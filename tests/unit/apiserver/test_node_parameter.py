"""``?node=``: a value that is no node's name (a DNS-1123 label) is the client's 400
naming the parameter. The realm image routes answered 404 "Node 'Bad_Name' not found",
which reads as a node missing from the fleet, and the realm quota route ignored the
parameter altogether."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kukeon.apiserver import ApiSettings, TokenBook, create_app
from kukeon.daemon.forwarding import Forwarder
from kukeon.store.errors import NotFound
from tests.unit.apiserver.test_app import ADMIN, FakeRegistry, V


class _NoNodes(FakeRegistry):
    """The realm ``r`` exists; no Node is registered."""

    async def get(self, kind: Any, key: tuple[str, ...]) -> Any:
        if kind == "Node":
            raise NotFound(f"Node {key[0]!r} not found")
        return await super().get(kind, key)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    book = TokenBook.from_document({"tokens": [{"token": ADMIN, "user": "a", "role": "admin"}]})
    registry = _NoNodes()
    app = create_app(registry=registry, settings=ApiSettings(socket_path=None), tokens=book)

    async def local_images(request: web.Request) -> web.Response:
        return web.json_response({"node": "n1"})

    app.router.add_get("/apis/kukeon.io/v1beta1/realms/{realm}/images", local_images)
    forwarder = Forwarder(
        registry=cast(Any, registry), node_name="n1", token_file=None, ca_file=None
    )
    forwarder.install(app, serves_cells=True)
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


@pytest.mark.parametrize("route", ["images", "quota"])
@pytest.mark.parametrize("node", ["Bad_Name", "n1.example", "x" * 64, "-n1"])
async def test_a_value_no_node_can_be_named_is_a_400_naming_the_parameter(
    client: TestClient[Any, Any], route: str, node: str
) -> None:
    async with client.get(f"{V}/realms/r/{route}", params={"node": node}) as response:
        status = await response.json()
    assert response.status == 400, status
    assert status["reason"] == "BadRequest"
    assert status["message"].startswith("query parameter node: not a node name: "), status
    assert status["details"]["causes"][0]["field"] == "node"


async def test_the_image_routes_still_tell_a_missing_node_and_serve_their_own(
    client: TestClient[Any, Any],
) -> None:
    images = f"{V}/realms/r/images"
    async with client.get(images, params={"node": "n2"}) as response:
        assert response.status == 404  # a valid name no node has
        assert "Node 'n2' not found" in (await response.json())["message"]
    for params in ({"node": "n1"}, {"node": ""}, {}):
        async with client.get(images, params=params) as response:
            assert response.status == 200, await response.text()
    async with client.get(images, params=[("node", "n1"), ("node", "n2")]) as response:
        assert response.status == 400  # given twice
        assert "given 2 times" in (await response.json())["message"]
