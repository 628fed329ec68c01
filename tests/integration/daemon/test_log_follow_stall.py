"""`logs -f` of a client that sends its request and never reads: the stream ends at the
write deadline instead of holding kukeond's task for as long as the cell lives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest

from kukeon.api import Kind
from kukeon.daemon import noderoutes
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_key
from tests.integration.daemon.test_transfer_routes import _cell, cell_url

pytestmark = pytest.mark.integration

# Megabytes of output (far more than the socket and aiohttp's buffers hold), then it lives on.
TALKER = ["-c", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -n 150000; exec sleep 600"]


async def test_a_follower_that_never_reads_is_ended_at_the_write_deadline(
    kukeond: Kukeond, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(noderoutes, "WRITE_DEADLINE_SECONDS", 1.0)
    caplog.set_level(logging.INFO, logger=noderoutes.__name__)
    k = kukeond
    await k.hierarchy()
    await _cell(k, "talker", TALKER)
    path = cell_url(k, "talker").removeprefix("http://kukeond") + "/log?follow=true"
    reader, writer = await asyncio.open_unix_connection(str(k.config.api_socket))
    try:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: kukeond\r\n\r\n".encode())
        await writer.drain()
        # Nothing read: the stream reader takes up to its limit, then stops the socket.
        for _ in range(150):  # 30 s
            if "read nothing for" in caplog.text:
                break
            await asyncio.sleep(0.2)
        # Ended by the server: what the socket held, then the end (the cell still runs).
        async with asyncio.timeout(30):
            while await reader.read(65536):
                pass
        assert "log stream of cell talker ended" in caplog.text
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        with contextlib.suppress(Exception):
            await k.registry.delete(Kind.CELL, cell_key(k, "talker"))
