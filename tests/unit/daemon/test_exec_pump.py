"""kukectl exec's stream pump: a session ends when its client goes, whatever the client sent.

Before, a client that closed its socket while the process ran (Ctrl-C on `kukectl exec --
sleep 5555`), or sent a resize frame `{"width": 5, "height": 1e309}` (int() of an infinity is
an OverflowError the resize did not expect, which ended the input's reader), left the pump
waiting for output that never came: the process ran on in the container, its FIFO
directory stayed, and the session's handler never returned.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import WSMsgType, web

from kukeon.daemon.noderoutes import ClientLeftError, _pump
from kukeon.daemon.terminalsize import resize_of
from kukeon.runtime.containerd.tasks import ExitStatus, FifoIO


class _Client:
    """A WebSocket whose client sends ``frames`` (binary) and then closes it."""

    def __init__(self, *frames: bytes) -> None:
        self.frames = frames

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        for frame in self.frames:
            await asyncio.sleep(0.01)
            yield type("Message", (), {"type": WSMsgType.BINARY, "data": frame})()

    async def send_bytes(self, data: bytes) -> None:
        pass


async def _pumped(tmp_path: Path, *frames: bytes) -> tuple[list[tuple[int, int]], Exception]:
    """Run the pump over a process that never exits nor writes; the resizes it passed on and
    what it ended with (within 5 s, or the test fails)."""
    loop = asyncio.get_running_loop()
    read_end, write_end = os.pipe()  # the process's stdout, its writer kept open
    os.set_blocking(read_end, False)
    fifos = FifoIO(tmp_path, terminal=False, stdin=False)
    fifos.stdout_fd = read_end
    waiting: asyncio.Future[ExitStatus] = loop.create_future()  # the process never exits
    resized: list[tuple[int, int]] = []

    async def close_stdin() -> None:
        pass

    async def resize(width: int, height: int) -> None:
        resized.append((width, height))

    try:
        socket = cast(web.WebSocketResponse, _Client(*frames))
        try:
            async with asyncio.timeout(5):
                await _pump(socket, fifos, waiting, close_stdin=close_stdin, resize=resize)
        except (ClientLeftError, TimeoutError) as error:  # TimeoutError: it hung
            return resized, error
        raise AssertionError("the pump returned an exit status for a process still running")
    finally:
        waiting.cancel()
        os.close(read_end)
        os.close(write_end)


async def test_a_client_closing_while_the_process_runs_ends_the_session(tmp_path: Path) -> None:
    _, ended = await _pumped(tmp_path)
    assert isinstance(ended, ClientLeftError)


async def test_no_resize_frame_ends_the_session_before_its_client(tmp_path: Path) -> None:
    hostile = [
        b'\x04{"width": 5, "height": 1e309}',
        b'\x04{"width": NaN, "height": 5}',
        b"\x04" + b"[" * 100_000 + b"]" * 100_000,
        b'\x04{"width": 99999999999999999999, "height": 5}',
        b"\x04not json",
        b"\x04[1, 2]",
        b'\x04{"width": "80"}',
        b"\x04\xff\xfe",
    ]
    resized, ended = await _pumped(tmp_path, *hostile, b'\x04{"width": 80, "height": 24}')
    assert isinstance(ended, ClientLeftError)
    assert resized == [(80, 24)]  # the one frame that is a size, after all the others


@pytest.mark.parametrize(
    ("payload", "size"),
    [
        (b'{"width": 80, "height": 24}', (80, 24)),
        (b'{"width": 10000, "height": 1}', (10000, 1)),
        (b'{"width": 0, "height": 24}', None),
        (b'{"width": 10001, "height": 24}', None),
        (b'{"width": -5, "height": 24}', None),
        (b'{"width": true, "height": 24}', None),
        (b'{"width": 80.5, "height": 24}', None),
        (b'{"width": 1e309, "height": 24}', None),
        (b'{"width": 80}', None),
        (b"[80, 24]", None),
        (b'"80x24"', None),
        (b"", None),
    ],
)
def test_resize_of(payload: bytes, size: tuple[int, int] | None) -> None:
    assert resize_of(payload) == size
