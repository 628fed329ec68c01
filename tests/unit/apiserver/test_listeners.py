"""The API's listeners: the TCP connection cap (and whether it fits the open-files limit), the
unix socket past it, and a failing accept() logged once with a count, not a traceback each."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from kukeon.apiserver import ApiServerError, ApiSettings, listeners
from kukeon.apiserver.listeners import (
    DEFAULT_MAX_TCP_CONNECTIONS,
    MIN_TCP_CONNECTIONS,
    OWN_DESCRIPTORS,
    AcceptingSite,
    ConnectionCapError,
    listener_metrics,
    tcp_connection_cap,
)
from kukeon.apiserver.runner import ApiServerRunner

UNIX = 400 + 1000  # the default apiMaxRequestsInflight + apiMaxLongRunning


def test_the_default_cap_is_4096_when_the_limit_has_room() -> None:
    assert tcp_connection_cap(0, open_files=1 << 20, unix_sessions=UNIX) == 4096
    assert DEFAULT_MAX_TCP_CONNECTIONS == 4096


def test_the_default_cap_is_lowered_to_what_the_limit_leaves() -> None:
    # 20,000 (this machine's): 20,000 - 1,024 - 1,400 left would be 17,576: 4096 stays.
    assert tcp_connection_cap(0, open_files=20_000, unix_sessions=UNIX) == 4096
    assert tcp_connection_cap(0, open_files=4096, unix_sessions=UNIX) == 4096 - 1024 - UNIX


def test_a_limit_too_small_for_the_default_is_refused_with_what_to_raise() -> None:
    with pytest.raises(ConnectionCapError) as refused:
        tcp_connection_cap(0, open_files=1024, unix_sessions=UNIX)
    message = str(refused.value)
    assert f"at least {OWN_DESCRIPTORS + UNIX + MIN_TCP_CONNECTIONS}, found 1024" in message
    assert "LimitNOFILE" in message
    assert "apiMaxLongRunning" in message


def test_a_cap_that_fits_is_kept_even_above_the_default() -> None:
    assert tcp_connection_cap(10_000, open_files=20_000, unix_sessions=UNIX) == 10_000
    assert tcp_connection_cap(8, open_files=4096, unix_sessions=UNIX) == 8


def test_a_cap_that_does_not_fit_is_refused_naming_both_ways_out() -> None:
    with pytest.raises(ConnectionCapError) as refused:
        tcp_connection_cap(19_000, open_files=20_000, unix_sessions=UNIX)
    message = str(refused.value)
    assert "apiMaxConnections 19000 does not fit the open-files limit" in message
    assert f"at least {19_000 + OWN_DESCRIPTORS + UNIX}" in message
    assert f"to {20_000 - OWN_DESCRIPTORS - UNIX} or less" in message


def _app() -> web.Application:
    app = web.Application()

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    return app


def _runner(tmp_path: Path, registry: CollectorRegistry, **settings: object) -> ApiServerRunner:
    return ApiServerRunner(
        app=_app(),
        settings=ApiSettings(
            socket_path=tmp_path / "api.sock",
            socket_group=None,
            tcp_address="127.0.0.1:0",
            **settings,
        ),
        tls=None,
        metrics_registry=registry,
    )


async def test_a_runner_whose_cap_does_not_fit_refuses_to_start(tmp_path: Path) -> None:
    runner = _runner(tmp_path, CollectorRegistry(), max_tcp_connections=1 << 40)
    with pytest.raises(ApiServerError, match="apiMaxConnections 1099511627776 does not fit"):
        await runner.start()
    await runner.stop()
    assert not (tmp_path / "api.sock").exists()


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[tuple[ApiServerRunner, CollectorRegistry]]:
    registry = CollectorRegistry()
    runner = _runner(tmp_path, registry, max_tcp_connections=3)
    await runner.start()
    try:
        yield runner, registry
    finally:
        await runner.stop()


async def _unix_get(path: Path) -> str:
    connector = aiohttp.UnixConnector(path=str(path))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://kukeond/", timeout=aiohttp.ClientTimeout(total=2)) as response,
    ):
        return await response.text()


async def test_past_the_cap_a_connection_is_closed_at_once_and_the_unix_socket_answers(
    capped: tuple[ApiServerRunner, CollectorRegistry], caplog: pytest.LogCaptureFixture
) -> None:
    runner, registry = capped
    assert runner.tcp_port is not None
    assert runner.socket_path is not None
    caplog.set_level(logging.DEBUG)
    hogs = [await asyncio.open_connection("127.0.0.1", runner.tcp_port) for _ in range(3)]
    try:
        for _ in range(50):  # the accept loop takes them one per turn
            if runner.tcp_site is not None and runner.tcp_site.open_connections == 3:
                break
            await asyncio.sleep(0.02)
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", runner.tcp_port)
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), 2) == b""  # closed at once
            writer.close()
        assert await asyncio.wait_for(_unix_get(runner.socket_path), 2) == "hello"
        assert (
            registry.get_sample_value("kukeon_api_connections_refused_total", {"listener": "tcp"})
            == 10
        )
        assert registry.get_sample_value("kukeon_api_connections", {"listener": "tcp"}) == 3
    finally:
        for _, writer in hogs:
            writer.close()
    refusals = [r for r in caplog.records if "a new connection closed at once" in r.getMessage()]
    assert len(refusals) == 1, refusals  # one line for the ten, not one each
    assert "3 are open (apiMaxConnections)" in refusals[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]
    # Once the hogs are gone their places are free again.
    for _ in range(100):
        if registry.get_sample_value("kukeon_api_connections", {"listener": "tcp"}) == 0:
            break
        await asyncio.sleep(0.02)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{runner.tcp_port}/") as response,
    ):
        assert await response.text() == "hello"


class _OutOfFiles:
    """A listening socket whose first ``failures`` accept() calls fail with EMFILE."""

    def __init__(self, sock: socket.socket, failures: int) -> None:
        self._sock = sock
        self.failures = failures

    def accept(self) -> tuple[socket.socket, object]:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return self._sock.accept()

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


async def test_a_failing_accept_is_one_line_with_a_count_and_accepting_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # asyncio's own server logged a traceback for each failure (17,500 of them, 9 MB, once
    # kukeond ran out of open files).
    monkeypatch.setattr(listeners, "ACCEPT_RETRY_SECONDS", 0.01)
    registry = CollectorRegistry()
    runner = web.AppRunner(_app())
    await runner.setup()
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    failing = _OutOfFiles(listening, 25)
    site = AcceptingSite(
        runner,
        cast(socket.socket, failing),
        listener="tcp",
        max_connections=10,
        metrics=listener_metrics(registry),
    )
    caplog.set_level(logging.DEBUG)
    await site.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/") as response,
        ):
            assert await response.text() == "hello"
    finally:
        await runner.cleanup()
    assert failing.failures == 0
    lines = [r for r in caplog.records if "accept() failed" in r.getMessage()]
    assert len(lines) == 1
    assert "Too many open files" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]
    assert registry.get_sample_value("kukeon_api_accept_errors_total", {"listener": "tcp"}) == 25


def test_a_repeated_trouble_is_said_once_then_with_its_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = iter([100.0, 101.0, 102.0, 103.0, 131.0, 132.0])
    monkeypatch.setattr(listeners, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    throttled = listeners._Throttled()
    caplog.set_level(logging.WARNING)
    for _ in range(6):
        throttled.note(lambda how_often: f"refused {how_often}")
    assert [r.getMessage() for r in caplog.records] == [
        "refused once",
        "refused 4 times in the last 31 s",  # the three within 30 s and this one
    ]
