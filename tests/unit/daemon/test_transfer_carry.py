"""kukectl cp's stream carrier, when the client goes before tar is done: nothing is left
for asyncio to report (an 'exception was never retrieved' at ERROR in kukeond's log)."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from kukeon.daemon.transfer import _carry
from kukeon.runtime.containerd.tasks import ExitStatus, FifoIO


class _GoneClient:
    """A WebSocket whose client closed it at once: no message, then the end."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Any]:
        await asyncio.sleep(0.05)
        return
        yield  # an async generator that yields nothing

    async def send_bytes(self, data: bytes) -> None:
        pass


async def test_a_client_gone_before_tar_ends_leaves_nothing_unretrieved(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    pipes = [os.pipe() for _ in range(2)]  # tar's stdout and stderr, writers kept open
    for read_end, _ in pipes:
        os.set_blocking(read_end, False)
    fifos = FifoIO(tmp_path, terminal=False, stdin=False)
    fifos.stdout_fd, fifos.stderr_fd = pipes[0][0], pipes[1][0]
    waiting: asyncio.Future[ExitStatus] = loop.create_future()  # tar never exits

    async def close_stdin() -> None:
        pass

    try:
        socket = cast(web.WebSocketResponse, _GoneClient())
        assert await _carry(socket, fifos, waiting, close_stdin=close_stdin) is None
        gc.collect()
        await asyncio.sleep(0)
        assert [c["message"] for c in reported] == []
    finally:
        waiting.cancel()
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        loop.set_exception_handler(None)
