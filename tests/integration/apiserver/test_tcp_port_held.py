"""A local user's listener on the API's TCP address does not keep the API server down.

Found as ``nobody`` (helper-154's local-user pass), as for /metrics
(tests/integration/daemon/test_metrics_port_held.py): the TCP listener is bound after the
unix socket and an address in use failed the whole start, so any account that bound the
port first (6443 and the like are unprivileged) kept kukeond from starting, its unix
socket included. Now, when only other accounts than root hold the address, the unix socket
serves, the holders are logged, and the TCP listener comes up once the address is free;
a listener of root's still fails the start.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kukeon.apiserver import ApiServerError, ApiSettings
from kukeon.apiserver import runner as runner_module
from kukeon.apiserver.runner import ApiServerRunner
from tests.fixtures.services import free_tcp_port
from tests.fixtures.squatter import nobody_listening

pytestmark = pytest.mark.integration


def _runner(socket_path: Path, address: str) -> ApiServerRunner:
    app = web.Application()

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    settings = ApiSettings(socket_path=socket_path, socket_group=None, tcp_address=address)
    return ApiServerRunner(app=app, settings=settings, tls=None)


async def _get(url: str, *, unix: Path | None = None) -> str:
    """The page; "" while nothing (or another program) answers there."""
    connector = aiohttp.UnixConnector(path=str(unix)) if unix is not None else None
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as reply,
        ):
            return await reply.text() if reply.status == 200 else ""
    except (aiohttp.ClientError, TimeoutError):
        return ""


async def test_a_local_users_listener_on_the_tcp_address_leaves_the_unix_socket_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_tcp_port()
    monkeypatch.setattr(runner_module, "TCP_RETRY_SECONDS", 0.2)
    runner = _runner(tmp_path / "api.sock", f"127.0.0.1:{port}")
    try:
        with nobody_listening(port) as squatter:
            with caplog.at_level(logging.ERROR, logger="kukeon.apiserver.runner"):
                await runner.start()  # before: ApiServerError '... address already in use'
            said = [r.getMessage() for r in caplog.records if r.name == "kukeon.apiserver.runner"]
            assert any(f"127.0.0.1:{port}" in s and "uid 65534 (nobody)" in s for s in said), said
            assert runner.tcp_site is None
            assert runner.tcp_port == port  # what the fleet is told: where it will listen
            assert await _get("http://kukeond/", unix=tmp_path / "api.sock") == "hello"
            squatter.terminate()
            squatter.wait(timeout=10)
        answer, deadline = "", time.monotonic() + 10
        while answer != "hello" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            answer = await _get(f"http://127.0.0.1:{port}/")
        assert answer == "hello"
        assert runner.tcp_site is not None
    finally:
        await runner.stop()
    with socket.socket() as probe:  # stopped: the address is free again
        probe.bind(("127.0.0.1", port))


async def test_roots_listener_on_the_tcp_address_still_fails_the_start(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        runner = _runner(tmp_path / "api.sock", f"127.0.0.1:{held.getsockname()[1]}")
        with pytest.raises(ApiServerError, match=r"(?i)address already in use"):
            await runner.start()
        await runner.stop()
    assert not (tmp_path / "api.sock").exists()
