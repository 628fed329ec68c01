"""A logger's lock on its pipes (what tells its keeper that a logger lives) is taken on a
description of the pipe the logger holds alone, so it ends with the logger.

The shim hands its logger the read ends it holds itself, until Go's garbage collector
closes them. Before, the logger locked those: once it was SIGKILLed, its lock stayed with
the shim's description, and kukeond's replacement (which opens the pipe afresh through
``/proc``) waited in ``flock(2)`` until the shim's next collection, minutes at times: the
container's output stopped reaching its log and attach sessions, and its writes blocked
once the pipe was full. Here the test holds the first logger's description, as the shim
does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kukeon.runtime.containerd.crilog import logger_command

WITHIN = 10.0


@pytest.fixture(params=["stdout", "terminal"])
def terminal(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    if request.param == "stdout":
        return None
    fifo = tmp_path / "stdin"
    os.mkfifo(fifo)
    return fifo


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        for end in (read_end, write_end):
            with contextlib.suppress(OSError):
                os.close(end)


STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_logger_left() -> Iterator[None]:
    try:
        yield
    finally:  # a failed test's loggers too
        while STARTED:
            process = STARTED.pop()
            if process.poll() is None:
                process.kill()
            process.wait(timeout=WITHIN)


def _start(log: Path, read_end: int, terminal: Path | None) -> subprocess.Popen[bytes]:
    name = "terminal" if terminal is not None else "stdout"
    process = subprocess.Popen(
        logger_command(log, streams={read_end: name}, ready_fd=None, terminal_of=terminal),
        pass_fds=(read_end,),
    )
    STARTED.append(process)
    return process


def _start_replacement(log: Path, read_end: int, terminal: Path | None) -> subprocess.Popen[bytes]:
    """As kukeond starts one: on the pipe opened again through /proc (its own description)."""
    fresh = os.open(f"/proc/self/fd/{read_end}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return _start(log, fresh, terminal)
    finally:
        os.close(fresh)


def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not done():
        assert time.monotonic() < deadline, f"not within {WITHIN} s: {what}"
        time.sleep(0.02)


def _logged(log: Path, text: bytes) -> Callable[[], bool]:
    return lambda: log.exists() and text in log.read_bytes()


def _locks_of(pid: int, inode: int) -> bool:
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if fields[1] == "FLOCK" and fields[4] == str(pid) and fields[5].endswith(f":{inode}"):
            return True
    return False


def _end(process: subprocess.Popen[bytes], write_end: int) -> None:
    os.close(write_end)  # the writer goes: the logger logs what is left and exits
    assert process.wait(timeout=WITHIN) == 0


def test_a_replacement_logs_while_the_shim_holds_the_killed_loggers_pipe(
    tmp_path: Path, pipe: tuple[int, int], terminal: Path | None
) -> None:
    read_end, write_end = pipe
    log = tmp_path / "c.log"
    first = _start(log, read_end, terminal)
    os.write(write_end, b"one\n")
    _until(_logged(log, b"one"), "the first logger logs")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=WITHIN)

    replacement = _start_replacement(log, read_end, terminal)
    os.write(write_end, b"two\n")
    _until(_logged(log, b"two"), "the replacement logs what came after the kill")
    inode = os.fstat(read_end).st_ino
    _until(lambda: _locks_of(replacement.pid, inode), "the replacement holds its lock")
    _end(replacement, write_end)


def test_a_stale_lock_on_the_shims_pipe_does_not_hold_the_replacement_off(
    tmp_path: Path, pipe: tuple[int, int], terminal: Path | None
) -> None:
    # A logger of an older kukeond locked the shim's description; killed, its lock stays
    # until the shim closes it. The replacement logs meanwhile, and locks once it can.
    read_end, write_end = pipe
    log = tmp_path / "c.log"
    fcntl.flock(read_end, fcntl.LOCK_EX)
    inode = os.fstat(read_end).st_ino
    replacement = _start_replacement(log, read_end, terminal)
    os.write(write_end, b"meanwhile\n")
    _until(_logged(log, b"meanwhile"), "the replacement logs beside the stale lock")
    assert not _locks_of(replacement.pid, inode)

    os.close(read_end)  # the shim's collection: the stale lock goes with its description
    _until(lambda: _locks_of(replacement.pid, inode), "the replacement takes the lock")
    os.write(write_end, b"after\n")
    _until(_logged(log, b"after"), "the replacement logs on")
    _end(replacement, write_end)
