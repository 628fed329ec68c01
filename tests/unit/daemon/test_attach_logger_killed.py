"""An attach session whose terminal logger was killed (and replaced) sends the last output
the replacement logs after the task's exit. The killed logger closed the log file as the
last one does (inotify's IN_CLOSE_WRITE under the log's own name), so the session took that
close for the end and stopped reading before the replacement had logged the rest."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import cast

from aiohttp import web

from kukeon.daemon.attach import _send_tail
from kukeon.daemon.logclose import WriterClosed
from kukeon.daemon.logfollow import ByteFollower
from kukeon.runtime.containerd.crilog import logger_command


class _Socket:
    """What _send_tail uses of a WebSocket: the frames it sends."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.frames.append(data)


def _logger(log: Path, read_end: int, fifo: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        logger_command(log, streams={read_end: "terminal"}, ready_fd=None, terminal_of=fifo),
        pass_fds=(read_end,),
    )


async def _logged(log: Path, data: bytes) -> None:
    async with asyncio.timeout(10):
        while data not in await asyncio.to_thread(log.read_bytes):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_the_tail_waits_for_a_killed_loggers_replacement(tmp_path: Path) -> None:
    log, fifo = tmp_path / "c.log", tmp_path / "stdin"
    os.mkfifo(fifo)
    log.touch()
    read_end, write_end = os.pipe()  # the test holds the read end, as the keeper does
    closing = WriterClosed(log)
    follower = ByteFollower(log)
    first = _logger(log, read_end, fifo)
    replacement: subprocess.Popen[bytes] | None = None
    try:
        os.write(write_end, b"before the kill\r\n")
        await _logged(log, b"before the kill")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        assert await closing.wait(within=5)  # the kill's close: no end of the output
        replacement = _logger(log, read_end, fifo)
        os.close(read_end)
        read_end = -1

        async def last_output() -> None:
            # The task's last output, logged by the replacement after the "exit".
            await asyncio.sleep(0.5)
            os.write(write_end, b"the last output\r\n")
            os.close(write_end)

        writing = asyncio.ensure_future(last_output())
        socket = _Socket()
        await _send_tail(
            cast(web.WebSocketResponse, socket),
            follower,
            closing,
            log_file=log,
            task_pid=os.getpid(),  # no task's shim to look under: any process of the log
        )
        await writing
        sent = b"".join(frame[1:] for frame in socket.frames if frame[:1] == b"\x01")
        assert sent == b"before the kill\r\nthe last output\r\n"
        assert replacement.wait(timeout=10) == 0
    finally:
        for process in (first, replacement):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        if read_end >= 0:
            os.close(read_end)
        closing.close()
        follower.close()
