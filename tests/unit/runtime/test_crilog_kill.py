"""The logger killed (SIGKILL) at any point loses nothing: what it had read from a pipe and
not logged is still in the pipe for its replacement (tee(2), then taken once logged), and
what it logged and had not taken yet is logged again. The test holds a read end of the
pipes throughout, as the keeper the shim's logger forks does (``crilog.LOGGER_SCRIPT``).

Before, the logger read (and so took) up to 64 KiB, then wrote its records: a kill in
between lost that read."""

from __future__ import annotations

import fcntl
import itertools
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kukeon.runtime.containerd.crilog import logger_command, parse_lines

LINES = 300_000

# Numbered lines for about 5 s, in writes of random sizes that often end inside a line (a
# kill finds a line's start waiting for its end), some larger than the pipe.
WRITER = r"""
import os, random, sys, time
out = int(sys.argv[1])
data = b"".join(b"%d\n" % n for n in range(int(sys.argv[2])))
random.seed(7)
at = 0
while at < len(data):
    step = random.choice((1, 7, 100, 1000, 4096, 4096, 100000))
    at += os.write(out, data[at:at + step])
    time.sleep(0.005)
"""


def _start_logger(log: Path, read_end: int, *, terminal: Path | None) -> subprocess.Popen[bytes]:
    name = "terminal" if terminal is not None else "stdout"
    return subprocess.Popen(
        logger_command(log, streams={read_end: name}, ready_fd=None, terminal_of=terminal),
        pass_fds=(read_end,),
    )


def _kill_loop(log: Path, *, terminal: Path | None) -> int:
    """Starts a writer of LINES numbered lines into a pipe whose loggers are SIGKILLed at
    random points while it writes, each replaced at once; the last one runs to the pipe's
    end. Returns how many kills found a logger still running."""
    read_end, write_end = os.pipe()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(write_end), str(LINES)], pass_fds=(write_end,)
    )
    os.close(write_end)
    random.seed(11)
    killed = 0
    try:
        while writer.poll() is None:
            logger = _start_logger(log, read_end, terminal=terminal)
            time.sleep(random.uniform(0.02, 0.12))  # started, then copying
            if logger.poll() is None:
                killed += 1
            logger.send_signal(signal.SIGKILL)
            logger.wait(timeout=10)
        last = _start_logger(log, read_end, terminal=terminal)
    finally:
        os.close(read_end)  # the "keeper" goes: the pipe ends with the writer
    assert writer.wait(timeout=120) == 0
    assert last.wait(timeout=60) == 0
    return killed


def _check(numbers: list[int], *, kills: int) -> None:
    missing = sorted(set(range(LINES)) - set(numbers))
    assert not missing, f"{len(missing)} lines lost, first {missing[:5]}"
    # Logged again only where a logger was killed: the numbers go back at most once a kill.
    backs = sum(1 for before, after in itertools.pairwise(numbers) if after <= before)
    assert backs <= kills


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "stdin"
    os.mkfifo(path)
    return path


def test_records_survive_a_logger_killed_again_and_again(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    kills = _kill_loop(log, terminal=None)
    assert kills >= 10, "the writer ended before the loggers were killed"
    records = list(parse_lines(log.read_bytes().splitlines()))
    assert all(r.stream == "stdout" and not r.partial for r in records)  # whole records only
    _check([int(r.text) for r in records if r.text.isdigit()], kills=kills)
    assert [r.text for r in records if not r.text.isdigit()] == []  # no line cut or joined


def test_terminal_output_survives_a_logger_killed_again_and_again(
    tmp_path: Path, fifo: Path
) -> None:
    log = tmp_path / "tty.log"
    kills = _kill_loop(log, terminal=fifo)
    assert kills >= 10, "the writer ended before the loggers were killed"
    # A terminal's log is raw bytes: a write the kill cut short is written whole again by
    # the replacement after a line end, so the cut piece is a line (at most one per kill).
    lines = log.read_bytes().splitlines()
    numbers = [int(line) for line in lines if line.isdigit()]
    assert len(lines) - len(numbers) <= kills
    _check(numbers, kills=kills)


def _unread_bytes(fd: int) -> int:
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0])


def _wait_for(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_terminal_write_the_kill_cut_inside_a_line_loses_no_line(
    tmp_path: Path, fifo: Path
) -> None:
    # A kill stops a write to a file at a page's end (the kernel checks for a fatal signal
    # there): the cut piece can be a line's middle. Before, the log ended inside a line
    # whose start the logger had taken, and its replacement wrote the pipe again after the
    # piece: "2770" + "1" + "11\n" gave 2770111, and line 277011 was never in the log.
    log = tmp_path / "tty.log"
    read_end, write_end = os.pipe()
    loggers: list[subprocess.Popen[bytes]] = []
    try:
        os.write(write_end, b"277009\n277010\n2770")
        loggers.append(_start_logger(log, read_end, terminal=fifo))
        _wait_for(
            lambda: log.exists() and log.read_bytes().endswith(b"2770"),
            "the first write was not logged",
        )
        _wait_for(lambda: _unread_bytes(read_end) <= 4, "the first write was not taken")
        loggers[0].send_signal(signal.SIGSTOP)
        os.write(write_end, b"11\n" + b"".join(b"%d\n" % n for n in range(277012, 277100)))
        loggers[0].send_signal(signal.SIGKILL)  # stopped before it wrote: its piece is ours
        loggers[0].wait(timeout=10)
        with log.open("ab") as cut:
            cut.write(b"1")  # what a write the kill cut after one byte leaves
        loggers.append(_start_logger(log, read_end, terminal=fifo))
    finally:
        os.close(read_end)
        os.close(write_end)
        if loggers:
            loggers[0].kill()  # the replacement ends with the pipe
        for logger in loggers:
            logger.wait(timeout=10)
    assert loggers[-1].returncode == 0
    lines = log.read_bytes().splitlines()
    numbers = [int(line) for line in lines if line.isdigit()]
    assert set(range(277009, 277100)) <= set(numbers), lines[:6]
    assert lines[:5] == [b"277009", b"277010", b"27701", b"277011", b"277012"]


def test_a_lines_start_waits_in_the_pipe_without_busy_waiting(tmp_path: Path) -> None:
    # The logger leaves a line's start in the pipe until its end comes (so that a kill
    # cannot take it): an edge-triggered wait, not a spin on a pipe that stays readable.
    log = tmp_path / "c.log"
    read_end, write_end = os.pipe()
    logger = _start_logger(log, read_end, terminal=None)
    os.close(read_end)
    try:
        os.write(write_end, b"whole\nthe start of a line")
        time.sleep(1.5)
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{logger.pid}/stat").read_text().rsplit(")", 1)[1].split()
        busy = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        assert busy < 0.5, f"{busy}s of CPU while a line's start waited"
        os.write(write_end, b" and its end\n")
        deadline = time.monotonic() + 5
        while b"its end" not in log.read_bytes():
            assert time.monotonic() < deadline, "the line's end was not logged"
            time.sleep(0.02)
    finally:
        os.close(write_end)
    assert logger.wait(timeout=10) == 0
    texts = [r.text for r in parse_lines(log.read_bytes().splitlines())]
    assert texts == [b"whole", b"the start of a line and its end"]


def test_a_stream_that_is_no_pipe_is_read_as_before(tmp_path: Path) -> None:
    # tee(2) takes pipes only: a socket (EINVAL) is read, a line's start kept by the logger.
    log = tmp_path / "c.log"
    ours, theirs = socket.socketpair()
    logger = _start_logger(log, theirs.fileno(), terminal=None)
    theirs.close()
    with ours:
        ours.sendall(b"one\ntw")
        time.sleep(0.2)
        ours.sendall(b"o\nthree without its end")
    assert logger.wait(timeout=10) == 0
    texts = [r.text for r in parse_lines(log.read_bytes().splitlines())]
    assert texts == [b"one", b"two", b"three without its end"]
