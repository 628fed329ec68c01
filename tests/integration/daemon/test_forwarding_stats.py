"""``kukectl top``'s routes through the fleet: a cell's stats come from its node, a node's
from the node named, and an editor's view of a node's cells is narrowed before forwarding.

Two real API servers on one etcd, over TLS, as in ``test_forwarding``; their stats routes
are stand-ins that say which node answered and who called, but authorise with the real
``authorize_node_stats`` (the receiving side of the check).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kukeon.api import Kind
from kukeon.apiserver.auth import denial
from kukeon.apiserver.handlers import principal_of, route_patterns
from kukeon.apiserver.status import ApiError
from kukeon.daemon.forwarding import FORWARDED_BY_HEADER
from kukeon.daemon.statsroutes import authorize_node_stats
from kukeon.store import Registry
from tests.integration.apiserver.conftest import (  # noqa: F401 - the certs fixture
    Certs,
    certs,
)
from tests.integration.daemon.test_forwarding import Fleet, _cell, _create, running_fleet

pytestmark = pytest.mark.integration

ADMIN = "admin-" + uuid.uuid4().hex
VIEWER = "viewer-" + uuid.uuid4().hex
EDITOR = "editor-" + uuid.uuid4().hex
FLEET = "fleet-" + uuid.uuid4().hex
API = "/apis/kukeon.io/v1beta1"
CELLS = f"{API}/realms/default/spaces/default/stacks/default/cells"


class StatsStandIn:
    def __init__(self, node: str) -> None:
        self.node = node

    def seen(self, request: web.Request, **extra: Any) -> dict[str, Any]:
        return {
            "node": self.node,
            "user": principal_of(request).user,
            "forwardedBy": request.headers.get(FORWARDED_BY_HEADER),
            **extra,
        }

    def add_routes(self, app: web.Application) -> None:
        _, cell_path = route_patterns(Kind.CELL)
        _, node_path = route_patterns(Kind.NODE)
        app.router.add_get(f"{cell_path}/stats", self.cell)
        app.router.add_get(f"{node_path}/stats", self.node_stats)

    async def cell(self, request: web.Request) -> web.StreamResponse:
        why = denial(principal_of(request), verb="get", realm="default", subresource="stats")
        if why:
            raise ApiError(403, why)
        return web.json_response(self.seen(request, cell=request.match_info["cell"]))

    async def node_stats(self, request: web.Request) -> web.StreamResponse:
        scope = authorize_node_stats(request)
        return web.json_response(self.seen(request, scope=list(scope)))


@pytest.fixture
async def stats_fleet(
    registry: Registry,
    certs: Certs,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> AsyncIterator[Fleet]:
    users: list[dict[str, Any]] = [
        {"token": ADMIN, "user": "alice", "role": "admin"},
        {"token": VIEWER, "user": "victor", "role": "viewer"},
        {"token": EDITOR, "user": "eve", "role": "editor", "realms": ["default"]},
    ]
    routes = {"na": StatsStandIn("na").add_routes, "nb": StatsStandIn("nb").add_routes, "api": None}
    async with running_fleet(
        registry, certs, tmp_path, users=users, fleet_token=FLEET, routes=routes
    ) as running:
        for cell, node in (("on-a", "na"), ("on-b", "nb")):
            await _create(registry, _cell(cell, node))
        yield running


async def _answer(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_cell_and_node_stats_come_from_their_node(stats_fleet: Fleet) -> None:
    async with stats_fleet.session("na", ADMIN) as client:
        code, body = await _answer(await client.get(f"{CELLS}/on-b/stats"))
        assert code == 200
        assert body == {"node": "nb", "user": "fleet", "forwardedBy": "na", "cell": "on-b"}
        code, body = await _answer(await client.get(f"{CELLS}/on-a/stats"))
        assert (body["node"], body["forwardedBy"]) == ("na", None)
        code, body = await _answer(
            await client.get(f"{API}/nodes/nb/stats", params={"realm": "default"})
        )
        assert code == 200
        assert body == {"node": "nb", "user": "fleet", "forwardedBy": "na", "scope": ["default"]}
        code, body = await _answer(await client.get(f"{API}/nodes/na/stats"))
        assert (body["node"], body["user"], body["scope"]) == ("na", "alice", [])
        # a node nobody registered: the client's 404 (38e710b), naming the node
        code, body = await _answer(await client.get(f"{API}/nodes/nc/stats"))
        assert code == 404, body
        assert "nc" in body["message"]
    async with stats_fleet.session("na", VIEWER) as client:
        code, body = await _answer(await client.get(f"{API}/nodes/nb/stats"))
        assert (code, body["node"]) == (200, "nb")


async def test_an_editor_names_its_realm_before_anything_is_forwarded(stats_fleet: Fleet) -> None:
    async with stats_fleet.session("na", EDITOR) as client:
        code, body = await _answer(await client.get(f"{API}/nodes/nb/stats"))
        assert code == 403
        assert "realm=" in body["message"]
        code, body = await _answer(
            await client.get(f"{API}/nodes/nb/stats", params={"realm": "other"})
        )
        assert code == 403
        assert "other" in body["message"]
        code, body = await _answer(
            await client.get(f"{API}/nodes/nb/stats", params={"realm": "default"})
        )
        assert (code, body["node"], body["scope"]) == (200, "nb", ["default"])
        # the node's own figures only: no realm needed
        code, body = await _answer(
            await client.get(f"{API}/nodes/nb/stats", params={"cells": "false"})
        )
        assert (code, body["node"]) == (200, "nb")
        # and the same rule on the node itself
        code, body = await _answer(await client.get(f"{API}/nodes/na/stats"))
        assert code == 403


async def test_an_api_only_server_forwards_and_is_no_node(stats_fleet: Fleet) -> None:
    async with stats_fleet.session("api", ADMIN) as client:
        code, body = await _answer(await client.get(f"{API}/nodes/nb/stats"))
        assert (code, body["node"], body["forwardedBy"]) == (200, "nb", "api")
        code, body = await _answer(await client.get(f"{CELLS}/on-a/stats"))
        assert (code, body["node"], body["forwardedBy"]) == (200, "na", "api")
        code, body = await _answer(await client.get(f"{API}/nodes/api/stats"))
        assert code == 404
        assert "API only" in body["message"]
