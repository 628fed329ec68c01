"""No cache keeps an API answer: each holds what the caller's token may read. Before, the
JSON answers carried no Cache-Control at all (only the console's own routes and watches
said no-store), so only the console's fetch options kept them out of the browser's cache."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from kukeon.apiserver import ApiSettings, TokenBook, create_app
from kukeon.ui.routes import UiRoutes
from tests.unit.apiserver.test_app import ADMIN, FakeRegistry, V


async def test_api_answers_are_for_no_cache_static_files_are_revalidated() -> None:
    book = TokenBook.from_document({"tokens": [{"token": ADMIN, "user": "a", "role": "admin"}]})
    app = create_app(registry=FakeRegistry(), settings=ApiSettings(socket_path=None), tokens=book)
    UiRoutes().add_routes(app)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with TestClient(TestServer(app)) as client:
        for path, headers, code in (
            (f"{V}/realms/team", admin, 200),
            (f"{V}/realms", admin, 200),
            (f"{V}/realms/team", {}, 401),
            (f"{V}/nothing-here", admin, 404),
            ("/ui/whoami", admin, 200),
        ):
            answer = await client.get(path, headers=headers)
            assert answer.status == code, path
            assert answer.headers["Cache-Control"] == "no-store", path
            assert answer.headers["X-Content-Type-Options"] == "nosniff", path
        script = await client.get("/ui/static/js/main.js")
        assert script.headers["Cache-Control"] == "no-cache"  # may be kept, revalidated
