"""A runner that finds another server on its socket leaves that socket alone (it removed
it on its way out, so the running kukeond could no longer be reached)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kukeon.apiserver import ApiServerError, ApiSettings
from kukeon.apiserver.runner import ApiServerRunner


def _runner(socket: Path) -> ApiServerRunner:
    app = web.Application()

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="first")

    app.router.add_get("/", hello)
    settings = ApiSettings(socket_path=socket, socket_group=None, tcp_address=None)
    return ApiServerRunner(app=app, settings=settings, tls=None)


async def test_the_socket_of_another_server_survives_a_failed_start(tmp_path: Path) -> None:
    socket = tmp_path / "api.sock"
    first, second = _runner(socket), _runner(socket)
    await first.start()
    try:
        with pytest.raises(ApiServerError, match="another server is already listening"):
            await second.start()
        await second.stop()
        assert socket.is_socket()
        connector = aiohttp.UnixConnector(path=str(socket))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get("http://kukeond/") as response,
        ):
            assert await response.text() == "first"
    finally:
        await first.stop()
    assert not socket.exists()  # its own socket, the first runner removes
