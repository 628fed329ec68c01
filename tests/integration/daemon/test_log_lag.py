"""A reader that lags by more than the kept files (containerLogMaxFiles) is told, on real
containerd and runc: `logs -f` gets a `[kukeon]` line where the lines are missing, an attach
session a notice on its stderr channel (2), never in the terminal's output. Before, the
lines removed unread were missing without a sign. Each client stops reading for a while, so
the container's logger rotates through every kept file many times meanwhile (64 KiB files,
2 kept)."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.runtime.containerd.crilog import rotated_logs
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container
from tests.integration.daemon.test_attach import cell_url, session, shell

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(container_log_max_size=65536, container_log_max_files=2),
]
# How many files the reader lost depends on how far it lagged when it looked: 1 or more.
LOST = re.compile(
    rb"\d+ log files? of this output (?:were|was) removed before this reader got to them"
)

LINE = "x" * 100
WRITER = f"i=0; while :; do echo $i-{LINE}; i=$((i+1)); done"
ROTATIONS = 40  # 2.5 MiB written while the client reads nothing: more than any buffer


async def _rotated(k: Kukeond, cell: str, container: str, *, past: int) -> None:
    """Until the container's logger numbered a file beyond ``past`` (written since the
    reader stopped: it rotated through every kept file many times)."""
    log = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", cell)).log(container)
    async with asyncio.timeout(120):
        while True:
            kept = await asyncio.to_thread(rotated_logs, log)
            if kept and int(kept[-1].name.rsplit(".", 1)[1]) > past:
                return
            await asyncio.sleep(0.2)


async def _numbered(k: Kukeond, cell: str, container: str) -> int:
    log = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", cell)).log(container)
    kept = await asyncio.to_thread(rotated_logs, log)
    return int(kept[-1].name.rsplit(".", 1)[1]) if kept else 0


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
        # Takes nothing: kukeond's writes wait, its follower lags.
        await _rotated(k, "busy", "w", past=await _numbered(k, "busy", "w") + ROTATIONS)
        async with asyncio.timeout(30):
            async for line in stream.content:
                if line.startswith(b"[kukeon]"):
                    notice = line
                    break
    assert LOST.search(notice), notice
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
        # Takes nothing: the session's sends wait, its follower lags.
        await _rotated(k, "tty", "a", past=await _numbered(k, "tty", "a") + ROTATIONS)
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
    assert LOST.search(notice), notice
    await k.registry.delete(Kind.CELL, cell_key(k, "tty"))
