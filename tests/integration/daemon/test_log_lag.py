"""A reader that lags by more than the kept files (containerLogMaxFiles) is told, on real
containerd and runc: `logs -f` gets a `[kukeon]` line where the lines are missing, an attach
session a notice on its stderr channel (2), never in the terminal's output. Before, the
lines removed unread were missing without a sign. Each client stops reading for a while, so
the container's logger rotates through every kept file meanwhile (64 KiB files, 2 kept)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container
from tests.integration.daemon.test_attach import cell_url, session, shell

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(container_log_max_size=65536, container_log_max_files=2),
]

LINE = "x" * 100
WRITER = f"i=0; while :; do echo $i-{LINE}; i=$((i+1)); done"


async def test_a_lagging_logs_follower_is_told_what_it_lost(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "busy", [container(k, "w", script=WRITER)]))
    await k.wait_for(Kind.CELL, cell_key(k, "busy"), state="Ready")
    notice = b""
    async with (
        session(k) as http,
        http.get(
            f"{cell_url(k, 'busy')}/log", params={"follow": "true", "tailLines": "0"}
        ) as stream,
    ):
        assert stream.status == 200
        await stream.content.readline()
        await asyncio.sleep(3)  # takes nothing: kukeond's writes wait, its follower lags
        async with asyncio.timeout(30):
            async for line in stream.content:
                if line.startswith(b"[kukeon]"):
                    notice = line
                    break
    assert b"log files of this output were removed before this reader got to them" in notice
    await k.registry.delete(Kind.CELL, cell_key(k, "busy"))


async def test_a_lagging_attach_session_is_told_on_its_stderr_channel(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "tty", [shell(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "tty"), state="Ready")
    async with (
        session(k) as http,
        http.ws_connect(f"{cell_url(k, 'tty')}/attach", max_msg_size=1 << 22) as socket,
    ):
        await socket.send_bytes(b"\x00" + f"stty -echo; {WRITER}\n".encode())
        await socket.receive()
        await asyncio.sleep(3)  # takes nothing: the session's sends wait, its follower lags
        notice = b""
        async with asyncio.timeout(30):
            while not notice:
                message = await socket.receive()
                assert message.type == aiohttp.WSMsgType.BINARY, message
                if message.data[:1] == b"\x02":
                    notice = message.data[1:]
                else:
                    assert message.data[:1] == b"\x01"
                    assert b"[kukeon]" not in message.data
    assert b"log files of this output were removed before this reader got to them" in notice
    await k.registry.delete(Kind.CELL, cell_key(k, "tty"))
