"""Clients that read nothing, or stay idle, do not keep their connections: a watch never
read, a large list never read, a kept-alive connection left idle. Each is seen on the
server's side (``kukeon_api_connections{listener="unix"}``) while the client still holds
its end open, and no traceback is logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from kukeon.apiserver import lowlevel
from kukeon.store import Registry
from tests.integration.apiserver.conftest import Api, Certs, realm_doc, running_api

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
BIG = "x" * 200_000
"""An annotation large enough that a few documents fill every buffer between us and it."""


@contextlib.asynccontextmanager
async def raw_client(path: Path, request: bytes) -> AsyncIterator[socket.socket]:
    """A unix connection that sends ``request`` and then reads nothing (closed after).
    Non-blocking: the server answers on this test's own event loop."""
    loop = asyncio.get_running_loop()
    client = socket.socket(socket.AF_UNIX)
    try:
        client.setblocking(False)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await loop.sock_connect(client, str(path))
        await loop.sock_sendall(client, request)
        yield client
    finally:
        client.close()


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: kukeond\r\n\r\n".encode()


def _open_connections(api: Api) -> float:
    value = api.metrics.get_sample_value("kukeon_api_connections", {"listener": "unix"})
    return value or 0.0


async def _until_connections(api: Api, count: float, within: float) -> None:
    deadline = time.monotonic() + within
    while _open_connections(api) != count:
        assert time.monotonic() < deadline, (
            f"{_open_connections(api)} connections still open after {within}s, not {count}"
        )
        await asyncio.sleep(0.1)


async def _write_big_realms(api: Api, names: list[str]) -> None:
    """Realms with large annotations, through a session closed before we return."""
    connector = aiohttp.UnixConnector(path=str(api.socket))
    async with aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as http:
        for name in names:
            document = realm_doc(name)
            document["metadata"]["annotations"] = {"big": BIG + name}
            async with http.post(f"{V}/realms", json=document) as response:
                assert response.status == 201, await response.text()


def _no_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_a_watch_never_read_is_cut_off(
    registry: Registry,
    certs: Certs,
    tokens_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, its write waited for ever: the connection, the task and its long-running
    place were held as long as the client kept its end open."""
    monkeypatch.setattr(lowlevel, "STALL_SECONDS", 1.0)
    watch = _get(f"{V}/realms?watch=1&timeoutSeconds=3600")
    async with running_api(registry, certs, tokens_file) as api, raw_client(api.socket, watch):
        await _until_connections(api, 1, within=5)
        await _write_big_realms(api, [f"w{n}" for n in range(20)])
        await _until_connections(api, 0, within=15)
    _no_errors(caplog)


async def test_a_list_never_read_frees_its_connection(
    registry: Registry,
    certs: Certs,
    tokens_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A short request's answer is written after its deadline's reach: before, an answer
    the client never read held the connection for ever."""
    monkeypatch.setattr(lowlevel, "STALL_SECONDS", 1.0)
    async with running_api(registry, certs, tokens_file) as api:
        await _write_big_realms(api, [f"l{n}" for n in range(20)])
        await _until_connections(api, 0, within=5)
        async with raw_client(api.socket, _get(f"{V}/realms")):
            await _until_connections(api, 1, within=5)
            await _until_connections(api, 0, within=15)
    _no_errors(caplog)


async def test_an_idle_kept_alive_connection_is_closed(
    registry: Registry, certs: Certs, tokens_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp 3.14 keeps an idle connection 3630 s: thousands of them, or one trickling
    its second request's headers, were held an hour each."""
    monkeypatch.setattr(lowlevel, "KEEPALIVE_TIMEOUT", 1.0)
    loop = asyncio.get_running_loop()
    async with (
        running_api(registry, certs, tokens_file) as api,
        raw_client(api.socket, _get("/healthz")) as client,
    ):
        async with asyncio.timeout(10):
            assert (await loop.sock_recv(client, 4096)).startswith(b"HTTP/1.1 200")
        await loop.sock_sendall(client, b"GET /healthz HTTP/1.1\r\nHo")  # and no more
        await _until_connections(api, 0, within=10)


async def test_a_watch_closed_while_a_write_waits_logs_no_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A write waiting on the client fails with a bare ConnectionError ("Connection lost")
    when it leaves: before, that was an ERROR and a traceback per watcher (a `get -w`
    paused in a terminal, then Ctrl-C)."""
    watch = _get(f"{V}/realms?watch=1")
    async with raw_client(api.socket, watch):
        await _until_connections(api, 1, within=5)
        await _write_big_realms(api, [f"c{n}" for n in range(10)])
        await asyncio.sleep(0.5)  # the watch's write waits on the full buffers
    await _until_connections(api, 0, within=5)
    await asyncio.sleep(0.2)
    _no_errors(caplog)
