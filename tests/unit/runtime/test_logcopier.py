"""Finding a task's copier and replacing it, on plain processes: a "task" whose stdout and
stderr are pipes, a "shim" that holds the pipes' write ends, as containerd's does."""

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

from kukeon.processes import ProcessId, identify
from kukeon.runtime.containerd.crilog import logger_command, parse_lines
from kukeon.runtime.containerd.logcopier import (
    DEFAULT_PATH,
    Terminal,
    alive,
    find_copier,
    start_keeper,
    start_replacement,
)

# A task that writes a numbered line on each stream every 20 ms, its parent (the "shim")
# also starting a copier on the same pipes as containerd's shim does (fds 3 and 4). The task
# ignores SIGPIPE as a container's PID 1 does (any other writer dies of it with no reader).
SHIM = r"""
import fcntl, os, subprocess, sys, time
def pipe():
    # Read ends above 4, so that moving them to 3 and 4 in the copier clobbers neither.
    read, write = os.pipe()
    high = fcntl.fcntl(read, fcntl.F_DUPFD, 10)
    os.close(read)
    return high, write
out_r, out_w = pipe()
err_r, err_w = pipe()
task = subprocess.Popen(
    ["sh", "-c", "trap '' PIPE; i=0; while :; do echo out-$i; echo err-$i >&2; "
     "i=$((i+1)); sleep 0.02; done"],
    stdout=out_w, stderr=err_w,
)
copier = subprocess.Popen(
    ["bash", "-c", 'exec "$@" 3<&%d 4<&%d %d<&- %d<&-' % (out_r, err_r, out_r, err_r), "bash",
     *sys.argv[1:]],
    pass_fds=(out_r, err_r),
)
os.close(out_r)
os.close(err_r)
print(task.pid, copier.pid, flush=True)
time.sleep(600)
"""


def _wait(check: object, what: str, within: float = 10.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _numbers(log: Path, stream: str) -> list[int]:
    prefix = b"out-" if stream == "stdout" else b"err-"
    return [
        int(record.text[len(prefix) :])
        for record in parse_lines(log.read_bytes().splitlines())
        if record.stream == stream and record.text.startswith(prefix)
    ]


@pytest.fixture
def shim(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    log = tmp_path / "main.log"
    command = logger_command(log, streams={3: "stdout", 4: "stderr"}, ready_fd=None)
    process = subprocess.Popen(
        [sys.executable, "-c", SHIM, *command], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert process.stdout is not None
        task, copier = (int(n) for n in process.stdout.readline().split())
        yield process, task, copier, log
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_the_shims_copier_is_found_and_a_replacement_logs_both_streams(
    shim: tuple[subprocess.Popen[bytes], int, int, Path],
) -> None:
    _, task, copier, log = shim
    _wait(lambda: log.exists() and len(_numbers(log, "stdout")) > 3, "the shim's copier logs")
    found = find_copier(task, log)
    assert found is not None
    assert found.pid == copier

    os.kill(copier, signal.SIGKILL)
    _wait(lambda: not alive(found), "the copier is gone")
    assert find_copier(task, log) is None
    last = max(_numbers(log, "stdout"))
    replacement = start_replacement(task, log)
    assert replacement is not None
    try:
        _wait(lambda: max(_numbers(log, "stdout")) > last + 5, "stdout logged again")
        _wait(lambda: max(_numbers(log, "stderr")) > last + 5, "stderr logged again")
        # Found again, though it is not the shim's child.
        again = find_copier(task, log)
        assert again is not None
        assert again.pid == replacement.pid
    finally:
        replacement.kill()
        replacement.wait()


def _held(pid: int) -> set[str]:
    """What process ``pid``'s descriptors are (``pipe:[inode]``, a file's path)."""
    return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def _environment(pid: int) -> dict[str, str]:
    """Process ``pid``'s environment once its exec is through: in the middle of it (just
    after Popen returned) the new image's environment reads empty."""
    path = Path(f"/proc/{pid}/environ")
    _wait(lambda: path.read_bytes(), f"process {pid}'s environment")
    entries = path.read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if entry)


def _logging_in_kukeonds_environment(
    shim: tuple[subprocess.Popen[bytes], int, int, Path], monkeypatch: pytest.MonkeyPatch
) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    """The shim once its copier logs, kukeond's environment holding a secret, a PATH of its
    own and one locale setting (LC_ALL), which alone a process it starts should get."""
    for name in [n for n in os.environ if n in ("LANG", "LANGUAGE", "TZ") or n[:3] == "LC_"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KUKEON_ETCD_PASSWORD", "not for a copier")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("PATH", "/opt/kukeond/bin:" + os.environ["PATH"])
    log = shim[3]
    _wait(lambda: log.exists() and len(_numbers(log, "stdout")) > 3, "the shim's copier logs")
    return shim


def test_a_replacement_gets_a_minimal_environment(
    shim: tuple[subprocess.Popen[bytes], int, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # kukeond's own settings and secrets are none of a copier's business.
    _, task, copier, log = _logging_in_kukeonds_environment(shim, monkeypatch)
    os.kill(copier, signal.SIGKILL)
    replacement = start_replacement(task, log)
    assert replacement is not None
    try:
        assert _environment(replacement.pid) == {"PATH": DEFAULT_PATH, "LC_ALL": "C.UTF-8"}
    finally:
        replacement.kill()
        replacement.wait()


def test_a_task_without_output_pipes_gets_no_replacement(tmp_path: Path) -> None:
    task = subprocess.Popen(["sleep", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert start_replacement(task.pid, tmp_path / "main.log") is None
    finally:
        task.kill()
        task.wait()


def test_identify_tells_a_reused_pid_and_a_zombie_apart() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        me = identify(child.pid)
        assert me is not None
        assert alive(me)
        assert not alive(ProcessId(pid=child.pid, started=me.started + 1))
        child.kill()
        _wait(lambda: identify(child.pid) is None, "a zombie is not alive")
        assert os.path.exists(f"/proc/{child.pid}")  # not waited for yet
    finally:
        child.kill()
        child.wait()
    assert identify(child.pid) is None


# A TTY task's "shim": it copies the task's output into a pipe and keeps only its write end,
# stopping for good at a write that finds no reader, as containerd's console copy does; its
# logger (a terminal's, with its keeper) reads the pipe as fd 3. The copy ends, closing the
# pipe, when the task's output does.
TERMINAL_SHIM = r"""
import fcntl, os, subprocess, sys, threading, time
read, write = os.pipe()
high = fcntl.fcntl(read, fcntl.F_DUPFD, 10)
os.close(read)
task = subprocess.Popen(
    ["sh", "-c", "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.02; done"],
    stdout=subprocess.PIPE,
)
def copy():
    try:
        while data := os.read(task.stdout.fileno(), 4096):
            os.write(write, data)
    except BrokenPipeError:
        print("copy-stopped", flush=True)
    os.close(write)
threading.Thread(target=copy, daemon=True).start()
logger = subprocess.Popen(
    ["bash", "-c", 'exec "$@" 3<&%d %d<&-' % (high, high), "bash", *sys.argv[1:]],
    pass_fds=(high,),
)
os.close(high)
print(task.pid, logger.pid, flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def _terminal_shim(
    tmp_path: Path, *, keeper: bool
) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path, Terminal]]:
    """TERMINAL_SHIM with its logger (forking a keeper or not): the shim, the task's and the
    logger's pids, the log and the terminal."""
    log = tmp_path / "a.log"
    terminal = Terminal(stdin=tmp_path / "stdin")
    os.mkfifo(terminal.stdin)
    command = logger_command(
        log, streams={3: "terminal"}, ready_fd=None, terminal_of=terminal.stdin, keeper=keeper
    )
    process = subprocess.Popen(
        [sys.executable, "-c", TERMINAL_SHIM, *command],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        task, logger = (int(n) for n in process.stdout.readline().split())
        _wait(lambda: log.exists() and len(_ticks(log)) > 3, "the shim's logger logs")
        yield process, task, logger, log, terminal
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _ticks(log: Path) -> list[int]:
    return [int(line[5:]) for line in log.read_bytes().splitlines() if line.startswith(b"tick-")]


def test_a_terminal_loggers_replacement_reads_the_pipe_its_keeper_holds(tmp_path: Path) -> None:
    replacement: subprocess.Popen[bytes] | None = None
    with _terminal_shim(tmp_path, keeper=True) as (_, task, logger, log, terminal):
        try:
            found = find_copier(task, log)
            assert found is not None
            assert found.pid == logger  # not its keeper, a fork with the same argv
            keeper = find_copier(task, log, keeper=True)
            assert keeper is not None
            assert keeper.pid != logger
            _wait(  # the pipe and the log, nothing else (its name is written through a fd)
                lambda: _held(keeper.pid) == {os.readlink(f"/proc/{logger}/fd/3"), str(log)},
                "the keeper's fds",
            )

            os.kill(logger, signal.SIGKILL)
            _wait(lambda: not alive(found), "the logger is gone")
            time.sleep(0.3)  # output meanwhile waits in the pipe
            assert find_copier(task, log) is None
            replacement = start_replacement(task, log, terminal=terminal)
            assert replacement is not None
            last = max(_ticks(log))
            _wait(lambda: max(_ticks(log)) > last + 5, "logged again")
            ticks = _ticks(log)
            # Nothing twice, nothing lost but what the killed logger may have read and not
            # yet written (a kill between its read and its write: one read, a tick here).
            assert ticks == sorted(set(ticks))
            assert len(ticks) >= max(ticks)
            assert find_copier(task, log, keeper=True) == keeper  # the first one's serves on
            # It holds a writer of the stdin FIFO, as the shim's logger did.
            _wait(
                lambda: any(
                    os.readlink(f"/proc/{replacement.pid}/fd/{fd}") == str(terminal.stdin)
                    for fd in os.listdir(f"/proc/{replacement.pid}/fd")
                ),
                "the stdin FIFO held",
            )
            # The task's output ends: the pipe closes, and the keeper and the logger go.
            os.kill(task, signal.SIGKILL)
            _wait(lambda: not alive(keeper), "the keeper exits with the pipe")
            replacement.wait(timeout=10)
        finally:
            if replacement is not None:
                replacement.kill()
                replacement.wait()


def test_without_a_keeper_a_terminal_logger_is_not_replaced(tmp_path: Path) -> None:
    with _terminal_shim(tmp_path, keeper=False) as (process, task, logger, log, terminal):
        assert find_copier(task, log, keeper=True) is None
        os.kill(logger, signal.SIGKILL)
        # The copy finds no reader and stops for good: containerd's shim's fate before.
        assert process.stdout is not None
        assert process.stdout.readline() == b"copy-stopped\n"
        assert start_replacement(task, log, terminal=terminal) is None


def test_a_keeper_is_started_for_a_plain_task_without_one(
    shim: tuple[subprocess.Popen[bytes], int, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shim's logger here forks no keeper, as an older kukeond's did not.
    _, task, copier, log = _logging_in_kukeonds_environment(shim, monkeypatch)
    assert find_copier(task, log, keeper=True) is None
    keeper = start_keeper(task, log)
    assert keeper is not None
    try:
        found = find_copier(task, log, keeper=True)
        assert found is not None
        assert found.pid == keeper.pid  # named once started
        assert find_copier(task, log) == identify(copier)  # no logger for all its argv
        # The two pipes, opened through the logger's fds 3 and 4, and the log, nothing else.
        pipes = {os.readlink(f"/proc/{task}/fd/{fd}") for fd in (1, 2)}
        assert _held(keeper.pid) == {*pipes, str(log)}
        assert _environment(keeper.pid) == {"PATH": DEFAULT_PATH, "LC_ALL": "C.UTF-8"}

        os.kill(copier, signal.SIGKILL)
        time.sleep(0.5)  # the task writes on with no logger: it waits in the pipes
        last = max(_numbers(log, "stdout"))
        replacement = start_replacement(task, log)
        assert replacement is not None
        try:
            _wait(lambda: max(_numbers(log, "stdout")) > last + 30, "logged again")
            assert _environment(replacement.pid) == {"PATH": DEFAULT_PATH, "LC_ALL": "C.UTF-8"}
            numbers = _numbers(log, "stdout")
            assert set(range(max(numbers))) <= set(numbers), "a line written meanwhile lost"
        finally:
            replacement.kill()
            replacement.wait()
    finally:
        keeper.kill()
        keeper.wait()


def test_a_keeper_started_for_a_terminal_lets_its_logger_be_replaced(tmp_path: Path) -> None:
    keeper: subprocess.Popen[bytes] | None = None
    replacement: subprocess.Popen[bytes] | None = None
    with _terminal_shim(tmp_path, keeper=False) as (_, task, logger, log, terminal):
        try:
            assert find_copier(task, log, keeper=True) is None
            keeper = start_keeper(task, log, terminal)
            assert keeper is not None
            terminal_pipe = os.readlink(f"/proc/{logger}/fd/3")
            assert _held(keeper.pid) == {terminal_pipe, str(log)}

            os.kill(logger, signal.SIGKILL)
            time.sleep(0.3)  # output meanwhile waits in the pipe
            replacement = start_replacement(task, log, terminal=terminal)
            assert replacement is not None  # through the new keeper's pipe
            last = max(_ticks(log))
            _wait(lambda: max(_ticks(log)) > last + 5, "logged again")
            ticks = _ticks(log)
            assert set(range(max(ticks))) <= set(ticks), "a tick written meanwhile lost"
        finally:
            for started in (replacement, keeper):
                if started is not None:
                    started.kill()
                    started.wait()


def test_no_keeper_for_a_terminal_whose_logger_and_keeper_are_gone(tmp_path: Path) -> None:
    terminal = Terminal(stdin=tmp_path / "stdin")
    task = subprocess.Popen(["sleep", "30"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert start_keeper(task.pid, tmp_path / "main.log", terminal) is None
        assert start_keeper(task.pid, tmp_path / "main.log") is None  # no pipe either
    finally:
        task.kill()
        task.wait()
