"""A logger told that its task ended logs a line without its end.

The shim holds the write ends of a task's output pipes until the task is deleted, so no
hangup tells the logger that a task which is not restarted ended: a last line without a
newline (``printf done``) waited for the deletion, missing from ``kukectl logs`` of a
container that ended. kukeond tells the logger (``logcopier.tell_task_ended``) and waits
until the pipes hold nothing it has not logged."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from kukeon.processes import identify
from kukeon.runtime.containerd.crilog import logger_command, parse_lines
from kukeon.runtime.containerd.logcopier import tell_task_ended


def _logged(log: Path) -> list[tuple[str | None, str]]:
    return [
        (record.stream, record.text.decode())
        for record in parse_lines(log.read_bytes().splitlines())
    ]


def _until_logged(log: Path, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(_logged(log)) < count:
        assert time.monotonic() < deadline, _logged(log)
        time.sleep(0.01)


def _started(log: Path, stdout: int, stderr: int, ready: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        logger_command(log, streams={stdout: "stdout", stderr: "stderr"}, ready_fd=ready),
        pass_fds=(stdout, stderr, ready),
    )


def test_a_told_logger_logs_the_lines_without_their_end(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ready_r, ready_w = os.pipe()
    process = _started(log, out_r, err_r, ready_w)
    for fd in (out_r, err_r, ready_w):
        os.close(fd)
    try:
        assert os.read(ready_r, 1) == b""  # its handler is there once it is ready
        os.write(out_w, b"first\nlast without newline")
        os.write(err_w, b"error: no end")
        _until_logged(log, 1)
        time.sleep(0.2)
        assert _logged(log) == [("stdout", "first")]  # the rest waits for its line's end
        copier = identify(process.pid)
        assert copier is not None
        pidfd = os.pidfd_open(process.pid)
        try:
            assert tell_task_ended(copier, pidfd, within=5)
        finally:
            os.close(pidfd)
        # Logged when told returns: the writers (the shim's) are still there.
        assert sorted(_logged(log)) == [
            ("stderr", "error: no end"),
            ("stdout", "first"),
            ("stdout", "last without newline"),
        ]
        os.write(out_w, b"more\n")  # a writer left in the task's pid namespace: logged on
        _until_logged(log, 4)
        assert process.poll() is None
    finally:
        for fd in (out_w, err_w, ready_r):
            os.close(fd)
        assert process.wait(timeout=10) == 0
    assert _logged(log)[-1] == ("stdout", "more")


def test_a_process_that_is_no_logger_of_this_kind_is_not_told(tmp_path: Path) -> None:
    """A logger an older kukeond started has no handler: the signal would kill it."""
    process = subprocess.Popen(["sleep", "30"])
    try:
        copier = identify(process.pid)
        assert copier is not None
        pidfd = os.pidfd_open(process.pid)
        try:
            assert not tell_task_ended(copier, pidfd, within=5)
        finally:
            os.close(pidfd)
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
