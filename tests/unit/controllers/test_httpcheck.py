"""The probes' HTTP GET against raw loopback servers: what it sends, what it reads, and
how it fails on a peer that does not speak HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from kukeon.controllers.httpcheck import HttpReplyError, http_get, request_bytes

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def test_the_request_names_the_target_and_closes_the_connection() -> None:
    sent = request_bytes("10.0.0.2", 8080, "/ready?x=1 ü", [("user-agent", "mine"), ("X-A", "b")])
    lines = sent.decode("latin-1").split("\r\n")
    assert lines[0] == "GET /ready?x=1%20%C3%BC HTTP/1.1"
    assert "Host: 10.0.0.2:8080" in lines
    assert "user-agent: mine" in lines  # the probe's header replaces the default
    assert not any(line.startswith("User-Agent: kukeon") for line in lines)
    assert "X-A: b" in lines
    assert "Connection: close" in lines
    assert sent.endswith(b"\r\n\r\n")


async def test_status_and_capped_body() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        await writer.drain()
        writer.close()

    async for port in serve(handler):
        status, body = await http_get("127.0.0.1", port, "/h", [("X-Probe", "1")], limit=100)
    assert status == 503
    assert body == b"x" * 100
    assert b"X-Probe: 1" in seen[0]


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP reply"),
        (b"", "closed without a reply"),
        (b"HTTP/1.1 abc\r\n\r\n", "not an HTTP reply"),
    ],
)
async def test_a_peer_that_is_not_http_is_refused(reply: bytes, words: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    async for port in serve(handler):
        with pytest.raises(HttpReplyError, match=words):
            await http_get("127.0.0.1", port, "/")
