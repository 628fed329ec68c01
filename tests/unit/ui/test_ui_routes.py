"""The console's routes on the API app: the page without a token on TCP and with its strict
headers, everything else behind the token; a pasted manifest read into paths."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kukeon.apiserver.app import create_app
from kukeon.apiserver.auth import Principal, Role, TokenBook
from kukeon.apiserver.settings import ApiSettings
from kukeon.ui.headers import CONTENT_SECURITY_POLICY
from kukeon.ui.manifests import read_manifest
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


async def test_page_loads_without_token_with_strict_headers(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/ui/")
    assert response.status == 200
    body = await response.text()
    assert '<script type="module" src="static/js/main.js">' in body
    assert "<script>" not in body  # no inline script: the CSP would refuse it anyway
    headers = response.headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    redirect = await client.get("/ui", allow_redirects=False)
    assert (redirect.status, redirect.headers["Location"]) == (302, "/ui/")


async def test_static_files_are_served_from_the_table_only(
    client: TestClient[web.Request, web.Application],
) -> None:
    script = await client.get("/ui/static/js/main.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    again = await client.get(
        "/ui/static/js/main.js", headers={"If-None-Match": script.headers["ETag"]}
    )
    assert again.status == 304
    for path in ("/ui/static/../routes.py", "/ui/static/%2e%2e/routes.py", "/ui/static/nope.js"):
        missing = await client.get(path)
        assert missing.status in (401, 404), path  # never served (401: no such route)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (ADMIN, {"user": "alice", "role": "admin", "realms": [], "writes": True}),
        (VIEWER, {"user": "vera", "role": "viewer", "realms": [], "writes": False}),
    ],
)
async def test_whoami_needs_and_tells_the_token(
    client: TestClient[web.Request, web.Application], token: str, expected: dict[str, object]
) -> None:
    assert (await client.get("/ui/whoami")).status == 401
    assert (await client.post("/ui/manifest", data="kind: Realm")).status == 401
    answer = await client.get("/ui/whoami", headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 200
    assert await answer.json() == expected


async def test_manifest_read_into_paths_and_causes(
    client: TestClient[web.Request, web.Application],
) -> None:
    text = """
kind: Cell
metadata: {name: web}
spec: {realmId: r, spaceId: s, stackId: st, containers: [{id: a, image: b}]}
---
kind: Secret
metadata: {name: api, realm: r}
---
kind: Cell
metadata: {name: orphan}
spec: {realmId: r}
---
kind: Pod
"""
    answer = await client.post(
        "/ui/manifest", data=text, headers={"Authorization": f"Bearer {VIEWER}"}
    )
    assert answer.status == 200
    web_cell, secret, orphan, pod = (await answer.json())["documents"]
    root = "/apis/kukeon.io/v1beta1/realms/r"
    assert web_cell["collection"] == f"{root}/spaces/s/stacks/st/cells"
    assert web_cell["object"] == f"{root}/spaces/s/stacks/st/cells/web"
    assert secret["object"] == f"{root}/spaces/-/stacks/-/secrets/api"
    assert [c["field"] for c in orphan["causes"]] == ["spec.spaceId", "spec.stackId"]
    assert "collection" not in orphan
    assert pod["causes"][0]["field"] == "kind"


def test_manifest_reading_is_kukectls() -> None:
    [duplicate] = read_manifest("kind: Realm\nmetadata: {name: a}\nmetadata: {name: b}\n")
    assert "duplicate key" in duplicate["causes"][0]["message"]
    [listed] = read_manifest(
        '{"kind": "List", "items": [{"kind": "Realm", "metadata": {"name": "x"}}]}'
    )
    assert listed["object"] == "/apis/kukeon.io/v1beta1/realms/x"
