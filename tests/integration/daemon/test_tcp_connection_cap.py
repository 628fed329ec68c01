"""Unauthenticated clients cannot use up kukeond's open files through its TCP API listener.

A real kukeond with a TCP+TLS listener capped at 8 connections (``apiMaxConnections``):
eight clients each send four bytes of a TLS ClientHello and stop. The next TCP connection is
closed at once; the local admin's unix socket answers at once; kukeond's log has one line
for the refusals and no traceback; the TLS handshake timeout (10 s) closes the hogs, after
which a TLS client with a token is answered again.

On the tree before: no cap, every connection was kept 60 s (asyncio's handshake timeout)
and, once kukeond's open-files limit was reached, each failed accept() logged a traceback
and the unix socket could not be reached either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
import pytest

from kukeon.apiserver.listeners import TLS_HANDSHAKE_TIMEOUT
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture

pytestmark = [pytest.mark.integration, pytest.mark.kukeond_config(api_max_connections=8)]

CLIENT_HELLO_START = b"\x16\x03\x01\x02"
"""A TLS record header (handshake, TLS 1.0 record version) promising 512 bytes never sent."""


async def _unix_version(socket_path: str) -> int:
    connector = aiohttp.UnixConnector(path=socket_path)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://kukeond/version") as response,
    ):
        return response.status


async def test_hogs_past_the_cap_are_closed_and_the_admin_still_gets_in(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = tls_kukeond
    port = int(node.url.rsplit(":", 1)[1])
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    hogs: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        started = time.monotonic()
        for _ in range(8):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(CLIENT_HELLO_START)
            await writer.drain()
            hogs.append((reader, writer))
        await asyncio.sleep(0.5)  # kukeond takes them all
        refused_in: list[float] = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            asked = time.monotonic()
            with contextlib.suppress(ConnectionError):
                writer.write(CLIENT_HELLO_START)
                assert await asyncio.wait_for(reader.read(), 3) == b""
            refused_in.append(time.monotonic() - asked)
            writer.close()
        assert max(refused_in) < 1.0, refused_in

        asked = time.monotonic()
        assert await asyncio.wait_for(_unix_version(str(node.k.config.api_socket)), 2) == 200
        assert time.monotonic() - asked < 1.0

        # The handshake timeout ends the hogs: 10 s, not asyncio's 60.
        for reader, _ in hogs:
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), TLS_HANDSHAKE_TIMEOUT + 5) == b""
        held = time.monotonic() - started
        assert TLS_HANDSHAKE_TIMEOUT - 1 < held < TLS_HANDSHAKE_TIMEOUT + 5, held
    finally:
        for _, writer in hogs:
            writer.close()

    refusals = [r for r in caplog.records if "a new connection closed at once" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]
    assert "8 are open (apiMaxConnections)" in refusals[0].getMessage()
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not tracebacks
    assert not [r for r in caplog.records if "out of system resource" in r.getMessage()]

    for _ in range(50):  # the hogs' places come back as their connections end
        async with node.session("admin") as admin, admin.get("/version") as response:
            if response.status == 200:
                break
        await asyncio.sleep(0.1)
    assert response.status == 200
    async with node.session("admin") as admin, admin.get("/metrics") as response:
        text = await response.text()
    assert 'kukeon_api_connections_refused_total{listener="tcp"} 20.0' in text
