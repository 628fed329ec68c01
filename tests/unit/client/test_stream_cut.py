"""A followed stream (``kukectl logs -f``) whose server goes away mid-body: the cut body is
``ServerUnreachable`` ("stream from ... broke"), as a watch's is, not aiohttp's
``ClientPayloadError`` escaping as kukectl's "unexpected failure"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kukeon.client.apiclient import ApiClient
from kukeon.client.errors import ServerUnreachable


async def _cut_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One chunk of a chunked answer, then the connection closed (no last chunk)."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nline 1\r\n"
    )
    await writer.drain()
    writer.close()


async def test_a_stream_cut_by_the_server_is_unreachable(tmp_path: Path) -> None:
    socket = tmp_path / "api.sock"
    server = await asyncio.start_unix_server(_cut_chunked, path=str(socket))
    try:
        received: list[bytes] = []

        async def read() -> None:
            async with ApiClient(server=f"unix://{socket}") as client:
                async for chunk in client.stream("GET", "/log"):
                    received.append(chunk)

        with pytest.raises(ServerUnreachable, match="broke"):
            await read()
        assert b"".join(received) == b"line 1"
    finally:
        server.close()
        await server.wait_closed()
