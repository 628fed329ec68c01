"""A logger killed after its task ended, with output still in the pipes: its keeper logs it,
into the file the task's records went to (moved aside as the previous instance's by then, or
not). Bare pipes: a "shim" that holds the write ends until the task is gone, as
containerd's holds them until the task's deletion.

Before: the keeper ended when the pipes' writers were gone, and the output they still held
went with the last reader (the shim kills a logger still at work 12 s after the deletion)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.processes import identify
from kukeon.runtime.containerd import crilog, logkeeper
from kukeon.runtime.containerd.crilog import LogRotation, logger_command, parse_lines, rotated_logs
from kukeon.runtime.containerd.logcopier import alive, find_copier
from kukeon.runtime.containerd.logkeeper import DRAINER_NAME

LINES = 3000

# Starts the logger (with its keeper) on two pipes, then, at "go" on stdin, a task writing
# LINES numbered lines on each (some 15 KB: they fit in the pipes); once it is gone, closes
# the write ends it held and says "done".
SHIM = r"""
import fcntl, os, subprocess, sys, time
def pipe():
    read, write = os.pipe()
    high = fcntl.fcntl(read, fcntl.F_DUPFD, 10)
    os.close(read)
    return high, write
out_r, out_w = pipe()
err_r, err_w = pipe()
logger = subprocess.Popen(
    ["bash", "-c", 'exec "$@" 3<&%d 4<&%d %d<&- %d<&-' % (out_r, err_r, out_r, err_r), "bash",
     *sys.argv[1:]],
    pass_fds=(out_r, err_r),
)
os.close(out_r)
os.close(err_r)
print(logger.pid, flush=True)
sys.stdin.readline()
subprocess.run(
    ["sh", "-c", "i=0; while [ $i -lt %d ]; do echo $i; echo e$i >&2; i=$((i+1)); done" % LINES],
    stdout=out_w, stderr=err_w, check=True,
)
os.close(out_w)
os.close(err_w)
print("done", flush=True)
time.sleep(600)
""".replace("LINES", str(LINES))


def _wait(check: object, what: str, within: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _texts(log: Path) -> list[bytes]:
    return [record.text for record in parse_lines(log.read_bytes().splitlines())]


def _logged(log: Path, text: bytes) -> bool:
    """Whether a record of the rotating ``log`` holds ``text`` (not a time stamp that spells
    it). A rotation renames the file before it opens the next: for a moment there is none."""
    try:
        return text in _texts(log)
    except FileNotFoundError:
        return False


@pytest.fixture
def shim(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    log = tmp_path / "main.log"
    command = logger_command(log, streams={3: "stdout", 4: "stderr"}, ready_fd=None, keeper=True)
    process = subprocess.Popen(
        [sys.executable, "-c", SHIM, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        yield process, int(process.stdout.readline()), log
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _task_ends_while_its_logger_is_stopped(
    process: subprocess.Popen[bytes], logger: int, log: Path
) -> None:
    assert process.stdin is not None
    assert process.stdout is not None
    _wait(lambda: log.exists(), "the log opened")
    _wait(lambda: find_copier(logger, log, keeper=True) is not None, "the keeper forked")
    os.kill(logger, signal.SIGSTOP)
    process.stdin.write(b"go\n")
    process.stdin.flush()
    assert process.stdout.readline() == b"done\n"


def _whole(texts: list[bytes]) -> bool:
    return {f"{i}".encode() for i in range(LINES)} | {
        f"e{i}".encode() for i in range(LINES)
    } <= set(texts)


@pytest.mark.parametrize("moved", [False, True], ids=["kept", "moved-as-previous"])
def test_what_a_killed_logger_left_at_its_tasks_end_is_logged_by_its_keeper(
    shim: tuple[subprocess.Popen[bytes], int, Path], moved: bool
) -> None:
    process, logger, log = shim
    _task_ends_while_its_logger_is_stopped(process, logger, log)
    keeper = find_copier(logger, log, keeper=True)
    assert keeper is not None
    previous = log.with_name("main.previous.log")
    if moved:  # a restart: kukeond keeps the instance's log aside, the next one begins
        log.rename(previous)
        log.touch()
    os.kill(logger, signal.SIGKILL)
    instance = previous if moved else log
    _wait(lambda: _whole(_texts(instance)), "every line logged", within=20)
    _wait(lambda: not alive(keeper), "the keeper ends once it logged them")
    assert _texts(instance).count(b"0") == 1
    if moved:
        assert log.read_bytes() == b"", "the next instance's log got the lines"


def test_a_keeper_leaves_to_a_live_logger_what_it_logs(
    shim: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, logger, log = shim
    _task_ends_while_its_logger_is_stopped(process, logger, log)
    keeper = find_copier(logger, log, keeper=True)
    assert keeper is not None
    time.sleep(1.0)  # the keeper sees the hangup, and a logger that still holds its pipes
    assert alive(keeper)
    assert (Path(f"/proc/{keeper.pid}/comm").read_text().strip()) != DRAINER_NAME
    os.kill(logger, signal.SIGCONT)  # it logs them itself, once: the keeper then ends
    _wait(lambda: _whole(_texts(log)), "every line logged")
    _wait(lambda: not alive(keeper), "the keeper ends")
    _wait(lambda: identify(logger) is None, "the logger ends")
    assert _texts(log).count(b"0") == 1


# Starts the logger (with its keeper) on one pipe, writes 4,000 lines of 100 bytes into it
# and holds its write end (a task that runs on).
WRITER = r"""
import fcntl, os, subprocess, sys, time
read, write = os.pipe()
high = fcntl.fcntl(read, fcntl.F_DUPFD, 10)
os.close(read)
logger = subprocess.Popen(
    ["bash", "-c", 'exec "$@" 3<&%d %d<&-' % (high, high), "bash", *sys.argv[1:]],
    pass_fds=(high,),
)
os.close(high)
print(logger.pid, flush=True)
for i in range(4000):
    os.write(write, b"%099d\n" % i)
time.sleep(600)
"""


def test_a_keeper_holds_the_current_log_not_a_rotated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A removed file the keeper held would keep its space on the disk for the task's life.
    monkeypatch.setattr(logkeeper, "KEEPER_LOOK_SECONDS", 0.2)
    log = tmp_path / "main.log"
    rotation = LogRotation(max_size=crilog.MIN_ROTATED_SIZE, max_files=2)
    command = logger_command(
        log, streams={3: "stdout"}, ready_fd=None, keeper=True, rotation=rotation
    )
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, *command], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert process.stdout is not None
        logger = int(process.stdout.readline())
        _wait(lambda: find_copier(logger, log, keeper=True) is not None, "the keeper forked")
        keeper = find_copier(logger, log, keeper=True)
        assert keeper is not None
        _wait(lambda: _logged(log, b"%099d" % 3999), "every line logged")
        assert rotated_logs(log), "not rotated"

        def files() -> set[str]:
            held = set()
            for fd in os.listdir(f"/proc/{keeper.pid}/fd"):
                # One the keeper closed since it was listed (the file it opened to hold
                # instead of a rotated one) is not held.
                with contextlib.suppress(FileNotFoundError):
                    held.add(os.readlink(f"/proc/{keeper.pid}/fd/{fd}"))
            return {path for path in held if not path.startswith("pipe:")}

        _wait(lambda: files() == {str(log)}, "the keeper holds the current log")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
