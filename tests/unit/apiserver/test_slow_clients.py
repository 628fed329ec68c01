"""A client that trickles its request's headers (slowloris) is closed after HEADER_TIMEOUT;
one that sent its request keeps its connection for as long as its handler takes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from kukeon.apiserver import lowlevel
from tests.unit.apiserver.statusserver import serving


@pytest.fixture
async def socket_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:
    monkeypatch.setattr(lowlevel, "HEADER_TIMEOUT", 0.5)

    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.5)  # longer than the header timeout
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/slow", slow)
    async with serving(app, tmp_path / "api.sock") as path:
        yield path


async def test_a_connection_trickling_its_headers_is_closed(socket_path: Path) -> None:
    # It was held for ever (200 s and counting on a private kukeond): aiohttp's timer at a
    # connection's start only closes connections that had a keep-alive answer.
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    started = time.monotonic()
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    with contextlib.suppress(ConnectionError):  # closed under it at 0.5 s
        for _ in range(4):  # a header line now and then, never the blank line
            await asyncio.sleep(0.2)
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
    try:
        tail = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:  # a write met the closed connection first
        tail = b""
    assert tail == b""  # closed without an answer, as kube-apiserver closes it
    assert time.monotonic() - started < 3
    writer.close()


async def test_a_request_whose_handler_outlives_the_timeout_is_answered(socket_path: Path) -> None:
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 5)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert b"done" in answer
    writer.close()
