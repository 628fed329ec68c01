"""The console's routes on an API app with an admin and a viewer token, no registry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kukeon.apiserver.app import create_app
from kukeon.apiserver.auth import Principal, Role, TokenBook
from kukeon.apiserver.settings import ApiSettings
from kukeon.ui.routes import UiRoutes

ADMIN, VIEWER = "a" * 32, "v" * 32


class _NoRegistry:
    """The UI routes never reach the registry; anything else here would be a bug."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"registry.{name} used")


@pytest_asyncio.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    tokens = TokenBook(
        {
            ADMIN: Principal(user="alice", role=Role.ADMIN),
            VIEWER: Principal(user="vera", role=Role.VIEWER),
        }
    )
    app = create_app(
        registry=_NoRegistry(),  # type: ignore[arg-type]
        settings=ApiSettings(socket_path=None, watch_cache=False),
        tokens=tokens,
    )
    UiRoutes().add_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
