"""An image import whose body stops coming is answered 408 at the idle deadline, its staging
file removed; before, it waited for ever, holding its long-running place, the staging file
and the connection. Against a real kukeond."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import pytest

from kukeon.daemon import imageroutes
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.integration


async def test_an_import_whose_body_stops_is_answered_408(
    kukeond: Kukeond, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imageroutes, "IMPORT_IDLE_SECONDS", 1.0)
    k = kukeond
    await k.hierarchy()
    path = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: kukeond\r\nContent-Type: application/x-tar\r\n"
        "Content-Length: 10000000\r\n\r\n"
    )
    reader, writer = await asyncio.open_unix_connection(str(k.config.api_socket))
    try:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer.write(head.encode() + b"\0" * 1024)  # the start of an archive, then nothing
        await writer.drain()
        async with asyncio.timeout(20):
            status_line = await reader.readline()
            headers = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in headers.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            status = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert "sent nothing for 1s" in status["message"], status
    controllers = k.daemon.controllers
    assert controllers is not None
    assert not list(controllers.images.archives.incoming.glob("*")), "a staging file is left"
