"""An attach session whose terminal logger was killed (and replaced) sends the last output
the replacement logs after the task's exit. The killed logger closed the log file as the
last one does (inotify's IN_CLOSE_WRITE under the log's own name), so the session took that
close for the end and stopped reading before the replacement had logged the rest.

The pieces are the real ones: a logger that forks its keeper (the shim's), killed; its
replacement started as kukeond starts one (``start_replacement``, through the keeper's
pipe). The session's tail looks for the log's writers the moment it starts: when kukeond
has not started the replacement yet, or it is still in its exec (``/proc`` shows no argv
of a process there), only the keeper tells that output is still to come."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from aiohttp import web

from kukeon.daemon.attach import _send_tail
from kukeon.daemon.logclose import WriterClosed
from kukeon.daemon.logfollow import ByteFollower
from kukeon.processes import ProcessId
from kukeon.runtime.containerd.crilog import logger_command
from kukeon.runtime.containerd.logcopier import Terminal, alive, find_copier, start_replacement

TASK_PID = os.getpid()
"""No task's shim to look under: the copier and keeper are found by their log anywhere."""


class _Socket:
    """What _send_tail uses of a WebSocket: the frames it sends."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.frames.append(data)

    def output(self) -> bytes:
        return b"".join(frame[1:] for frame in self.frames if frame[:1] == b"\x01")


@dataclass
class _Terminal:
    """A terminal task's output as the shim hands it on: the pipe's write end (the test
    writes the task's output), its log, its stdin FIFO, the logger the shim started (with
    its keeper) and whatever replacement the test starts."""

    log: Path
    stdin: Path
    write_end: int
    logger: subprocess.Popen[bytes]
    replacements: list[subprocess.Popen[bytes]]

    def write(self, data: bytes) -> None:
        os.write(self.write_end, data)

    def end(self) -> None:
        """The task's end: the last writer of the pipe goes."""
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def replace(self) -> subprocess.Popen[bytes]:
        process = start_replacement(TASK_PID, self.log, terminal=Terminal(self.stdin))
        assert process is not None
        self.replacements.append(process)
        return process

    def keeper(self) -> ProcessId | None:
        return find_copier(TASK_PID, self.log, keeper=True)


async def _logged(log: Path, data: bytes) -> None:
    async with asyncio.timeout(10):
        while data not in await asyncio.to_thread(log.read_bytes):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _named_keeper(terminal: _Terminal) -> ProcessId:
    async with asyncio.timeout(10):
        while (keeper := await asyncio.to_thread(terminal.keeper)) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return keeper


def _gone(process: ProcessId) -> None:
    """Until ``process`` (not the test's child) has exited; killed after 10 s."""
    for _ in range(1000):
        if not alive(process):
            return
        subprocess.run(["sleep", "0.01"], check=True)
    os.kill(process.pid, signal.SIGKILL)


def _shims_logger(log: Path, read_end: int, stdin: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        logger_command(
            log, streams={read_end: "terminal"}, ready_fd=None, terminal_of=stdin, keeper=True
        ),
        pass_fds=(read_end,),
    )


@pytest.fixture
async def terminal(tmp_path: Path) -> AsyncIterator[_Terminal]:
    log, stdin = tmp_path / "c.log", tmp_path / "stdin"
    os.mkfifo(stdin)
    log.touch()
    read_end, write_end = os.pipe()
    try:
        logger = _shims_logger(log, read_end, stdin)
    finally:
        os.close(read_end)  # the logger and its keeper hold the pipe, as the shim's do
    made = _Terminal(log, stdin, write_end, logger, [])
    keeper: ProcessId | None = None
    try:
        keeper = await _named_keeper(made)
        yield made
    finally:
        made.end()
        for process in (logger, *made.replacements):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if keeper is not None:
            await asyncio.to_thread(_gone, keeper)  # ends with its pipe's writers


async def _tail_after_a_logger_kill(
    terminal: _Terminal, meanwhile: Callable[[], Awaitable[None]]
) -> bytes:
    """What an attach session's tail sends when the task's logger was killed and the task
    ended while ``meanwhile`` runs (which starts as the tail does); asserted whole."""
    closing = WriterClosed(terminal.log)
    follower = ByteFollower(terminal.log)
    try:
        terminal.write(b"before the kill\r\n")
        await _logged(terminal.log, b"before the kill")
        terminal.logger.send_signal(signal.SIGKILL)
        terminal.logger.wait(timeout=10)
        assert await closing.wait(within=5)  # the kill's close: no end of the output
        socket = _Socket()
        happening = asyncio.ensure_future(meanwhile())
        await _send_tail(
            cast(web.WebSocketResponse, socket),
            follower,
            closing,
            log_file=terminal.log,
            task_pid=TASK_PID,
        )
        await happening
    finally:
        closing.close()
        follower.close()
    sent = socket.output()
    # A kill between the logger's write and its take has the replacement log the killed
    # one's last read again (at least once, crilog's docstring): what the log holds is sent.
    assert sent == terminal.log.read_bytes()
    assert sent.startswith(b"before the kill\r\n")
    assert sent.endswith(b"the last output\r\n")
    return sent


async def test_the_tail_waits_for_a_killed_loggers_replacement(terminal: _Terminal) -> None:
    """The replacement is started as the tail begins: the tail's first look may find it
    in its exec, with no argv in ``/proc`` yet (1 run in 15 under load had sent the tail
    without the last output, the replacement still running)."""
    replacements: list[subprocess.Popen[bytes]] = []

    async def replaced_then_last_output() -> None:
        replacements.append(await asyncio.to_thread(terminal.replace))
        # The task's last output, logged by the replacement after the "exit".
        await asyncio.sleep(0.5)
        terminal.write(b"the last output\r\n")
        terminal.end()

    await _tail_after_a_logger_kill(terminal, replaced_then_last_output)
    assert await asyncio.to_thread(replacements[0].wait, 10) == 0


async def test_the_tail_waits_for_a_replacement_not_started_yet(terminal: _Terminal) -> None:
    """The session's tail starts before kukeond has started the killed logger's
    replacement (the task's exit came first): it had sent the tail without the last
    output, which the keeper held for the replacement."""

    async def kukeond_replaces_late() -> None:
        await asyncio.sleep(0.3)
        terminal.write(b"the last output\r\n")
        await asyncio.sleep(0.3)
        await asyncio.to_thread(terminal.replace)
        terminal.end()

    await _tail_after_a_logger_kill(terminal, kukeond_replaces_late)


async def test_the_tail_waits_for_the_keeper_logging_what_nobody_did(
    terminal: _Terminal,
) -> None:
    """No replacement at all: once the pipe's writers are gone, the keeper logs what its
    killed logger left, and the tail waits for it."""

    async def the_task_ends() -> None:
        await asyncio.sleep(0.3)
        terminal.write(b"the last output\r\n")
        terminal.end()

    await _tail_after_a_logger_kill(terminal, the_task_ends)
