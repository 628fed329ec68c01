"""The node's routes that read only their query refuse a body instead of ignoring it:
``{"signal": "KILL"}`` posted to a cell's kill sent SIGTERM (the default), with a 200."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kukeon.apiserver.auth import LOCAL_ADMIN
from kukeon.apiserver.handlers import PRINCIPAL_KEY
from kukeon.apiserver.status import ApiError, status_response
from kukeon.controllers import Controllers
from kukeon.daemon.noderoutes import NodeRoutes
from kukeon.store import Registry

V = "/apis/kukeon.io/v1beta1"


@web.middleware
async def _admin(request: web.Request, handler: Any) -> web.StreamResponse:
    """The local admin, and an ApiError as its Status (create_app's middlewares, in short)."""
    request[PRINCIPAL_KEY] = LOCAL_ADMIN
    try:
        result: web.StreamResponse = await handler(request)
    except ApiError as error:
        return status_response(error)
    return result


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(middlewares=[_admin])
    # Nothing behind them: a body must be refused before either is asked anything.
    NodeRoutes(controllers=cast(Controllers, None), registry=cast(Registry, None)).add_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        (f"{V}/realms/r/spaces/s/stacks/t/cells/web/kill", "signal"),
        (f"{V}/realms/r/images/pull", "image"),
        (f"{V}/realms/r/images/prune", "node"),
    ],
)
@pytest.mark.parametrize("body", [b'{"signal": "KILL"}', b"x"])
async def test_a_body_to_a_route_that_reads_only_its_query_is_a_400(
    client: TestClient[web.Request, web.Application], path: str, parameter: str, body: bytes
) -> None:
    response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    status = await response.json()
    assert "takes no request body" in status["message"]
    assert parameter in status["message"]
    assert [c["field"] for c in status["details"]["causes"]] == ["body"]
