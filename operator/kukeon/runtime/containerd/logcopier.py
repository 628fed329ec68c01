"""Finding a task's log copier, and replacing one that died while its task runs.

A container's output reaches its log through the copier the shim started (:mod:`crilog`).
The shim keeps the read ends of the output pipes it hands the copier only until Go's
garbage collector closes them (a running container's shim was seen holding only the write
ends), so without another
reader a killed copier (kill -9, the OOM killer) would leave nobody reading them: the
container's writes would fail (EPIPE; a writer that is not its PID 1 dies of SIGPIPE) and
the shim's copy of a terminal would stop for good. So the copier forks a keeper at its
start (:mod:`crilog`, ``KEEPER_NAME``), a reader that never reads: once the copier is
killed, the output waits in the pipes (the container's writes block once they are full),
and the copier's own way of reading (tee, then take what it logged) left there whatever it
had not logged. A pipe can be opened again for reading through ``/proc/<pid>/fd/<n>`` of
any process that holds it, so a replacement opens the task's init's stdout and stderr that
way (an attachable task's terminal output: through the keeper's ``/proc/<pid>/fd/3``, and it
holds the stdin FIFO as the logger did) and appends to the same log: nothing is lost, and
what the killed copier had logged and not yet taken is logged twice. A keeper killed too,
or never forked (a task an older kukeond started), is started again by kukeond
(``start_keeper``, through the logger's descriptors); what a task writes while neither a
copier nor a keeper reads is lost, and the caller says so in an Event.

Everything here is blocking (``/proc`` reads, a fork): callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import stat
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kukeon.processes import ProcessId, identify, proc_stat, runs_as

from .crilog import (
    LogRotation,
    keeper_command,
    log_path_marker,
    logger_command,
    streams_in,
)
from .logkeeper import DRAINER_NAME, KEEPER_NAME, KEEPER_ONLY

log = logging.getLogger(__name__)

PROC = Path("/proc")

KEPT_ENVIRONMENT = ("LANG", "LANGUAGE", "TZ")
"""What a copier or keeper kukeond starts takes of kukeond's environment (``LC_*`` too):
the locale and zone, nothing else. The shim's logger gets nothing of containerd's either
(``CONTAINER_ID`` and ``CONTAINER_NAMESPACE`` only)."""

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def spawn_environment() -> dict[str, str]:
    """The environment of every process kukeond starts to copy or keep a task's output: a
    fixed ``PATH``, kukeond's locale and zone, and nothing of its own settings or secrets
    (``KUKEON_*``, tokens, etcd's credentials) that such a process has no use for."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name in KEPT_ENVIRONMENT or name.startswith("LC_")
    }
    return {"PATH": DEFAULT_PATH, **kept}


@dataclass(frozen=True, slots=True)
class Terminal:
    """An attachable task's terminal: ``stdin``, its input FIFO (a logger holds a writer of
    it, see ``ttyio``)."""

    stdin: Path


def alive(process: ProcessId) -> bool:
    return identify(process.pid) == process


def _parent(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[1]) if fields is not None else None


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for thread in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found.extend(int(child) for child in (thread / "children").read_text().split())
    return found


def _copies(pid: int, marker: bytes, keeper: bool) -> bool:
    # A container's process could spell a copier's argv (and an orphan of it is the shim's
    # child): a copier is kukeond's interpreter in the host's pid namespace. So could any
    # local user's (every argv is on show in /proc), one that kukeond would then watch as
    # the copier (no replacement while it runs) or read a terminal through: a copier is
    # root's (the shim's or kukeond's), all its ids. A logger's keeper has its logger's
    # argv (a fork): its name tells them apart.
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
        if len(argv) < 3 or argv[1] != b"-ISc" or marker not in argv[2]:
            return False
        comm = (PROC / str(pid) / "comm").read_text().strip()
        if (comm == KEEPER_NAME) != keeper:
            return False
        if not keeper and KEEPER_ONLY.encode() in argv[2] and comm != DRAINER_NAME:
            return False  # a keeper kukeond started, not named yet
        if not runs_as(pid, os.geteuid()):
            return False
        return os.readlink(PROC / str(pid) / "ns" / "pid") == os.readlink(PROC / "self/ns/pid")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def find_copier(task_pid: int, log_file: Path, *, keeper: bool = False) -> ProcessId | None:
    """The process copying the task's output into ``log_file``: the shim's child that
    the shim started, else a replacement started earlier (by any kukeond) anywhere.
    ``keeper``: the keeper of a terminal's pipe instead (the logger's child, the shim's
    once the logger is gone)."""
    marker = log_path_marker(log_file.absolute()).encode()
    shim = _parent(task_pid)
    candidates = _children(shim) if shim is not None else []
    candidates += [child for pid in candidates for child in _children(pid)]
    for pid in candidates:
        if pid != task_pid and _copies(pid, marker, keeper):
            return identify(pid)
    for entry in PROC.iterdir():
        if entry.name.isdecimal() and _copies(int(entry.name), marker, keeper):
            return identify(int(entry.name))
    return None


def forks_keeper(copier: ProcessId) -> bool:
    """Whether the logger ``copier`` forked a keeper at its start (the shim's, started by a
    kukeond that has keepers); False for a replacement, or a logger of an older kukeond."""
    try:
        argv = (PROC / str(copier.pid) / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return len(argv) > 2 and b"\nKEEPER = True\n" in argv[2]


def _open_fifo_reader(path: Path) -> tuple[int, int] | None:
    """A read end of the pipe or FIFO ``path`` names (a ``/proc`` fd link), and its
    inode; None when it is no pipe (any more)."""
    # Non-blocking: a named FIFO the program put there with no writer left would block a
    # read-only open for ever.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        opened = os.open(path, flags)
    except OSError:
        return None
    status = os.fstat(opened)
    if not stat.S_ISFIFO(status.st_mode):
        os.close(opened)
        return None
    os.set_blocking(opened, True)  # the copier's reads wait in poll, then read what is there
    return opened, status.st_ino


def held_streams(process: ProcessId) -> dict[int, str]:
    """Read ends of the output pipes that a logger or keeper holds (opened again through
    its ``/proc/<pid>/fd``, the descriptors its argv names), by stream; {} when it is gone."""
    try:
        argv = (PROC / str(process.pid) / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return {}
    streams: dict[int, str] = {}
    try:
        for fd, name in streams_in(argv[2] if len(argv) > 2 else b"").items():
            opened = _open_fifo_reader(PROC / str(process.pid) / "fd" / str(fd))
            if opened is not None:
                streams[opened[0]] = name
        if not alive(process):  # its pid another's by now: not its pipes
            for fd in streams:
                os.close(fd)
            return {}
    except BaseException:
        for fd in streams:
            os.close(fd)
        raise
    return streams


TASK_ENDED_SIGNAL = signal.SIGUSR2
"""kukeond's word to a logger that its task ended (``crilog``: a stream's line without its
end is logged then, as at a hangup, which only comes when the task is deleted)."""


def _catches(process: ProcessId, signum: int) -> bool | None:
    """Whether ``process`` has a handler for ``signum`` now; None when it never will (a
    logger of an older kukeond) or is gone."""
    base = PROC / str(process.pid)
    try:
        argv = (base / "cmdline").read_bytes().split(b"\0")
        status = (base / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if len(argv) < 3 or f"signal.{signal.Signals(signum).name}".encode() not in argv[2]:
        return None
    caught = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0"
    )
    return alive(process) and bool(int(caught, 16) >> (signum - 1) & 1)


def _unread(fd: int) -> bool:
    watch = select.poll()
    watch.register(fd, select.POLLIN)
    return any(event & select.POLLIN for _, event in watch.poll(0))


def tell_task_ended(copier: ProcessId, pidfd: int, *, within: float) -> bool:
    """Tell the logger ``copier`` (``pidfd``: a pidfd of it) that its task ended, and wait
    until it logged all its pipes hold, ``within`` seconds at most. False when it did not
    (a logger of an older kukeond, one that exited, or one that did not finish in time)."""
    deadline = time.monotonic() + within
    while not (catches := _catches(copier, TASK_ENDED_SIGNAL)):
        if catches is None or time.monotonic() >= deadline:
            return False
        time.sleep(0.01)  # a replacement just started: its handler comes with its start
    streams = held_streams(copier)
    try:
        signal.pidfd_send_signal(pidfd, TASK_ENDED_SIGNAL)
        while any(_unread(fd) for fd in streams):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True
    except ProcessLookupError:
        return False
    finally:
        for fd in streams:
            os.close(fd)


def _open_terminal_output(task_pid: int, log_file: Path) -> int | None:
    """A read end of the pipe the shim copies the task's terminal into, through its keeper
    (None: no keeper: a task started before there were any, or the keeper killed too)."""
    keeper = find_copier(task_pid, log_file, keeper=True)
    streams = held_streams(keeper) if keeper is not None else {}
    if not streams:
        return None
    first, *others = streams
    for fd in others:
        os.close(fd)
    return first


def _output_streams(task_pid: int) -> dict[int, str]:
    """Read ends of the pipes the task's init writes stdout and stderr to (opened)."""
    streams: dict[int, str] = {}
    inodes: set[int] = set()
    try:
        for fd, name in ((1, "stdout"), (2, "stderr")):
            opened = _open_fifo_reader(PROC / str(task_pid) / "fd" / str(fd))
            if opened is None:
                continue  # closed, or sent to a file by the program
            if opened[1] in inodes:  # 2>&1 inside the container: one reader, one stream
                os.close(opened[0])
                continue
            inodes.add(opened[1])
            streams[opened[0]] = name
    except BaseException:
        for fd in streams:
            os.close(fd)
        raise
    return streams


def start_replacement(
    task_pid: int,
    log_file: Path,
    rotation: LogRotation | None = None,
    terminal: Terminal | None = None,
    cgroup_procs: Sequence[Path] = (),
) -> subprocess.Popen[bytes] | None:
    """A copier of the running task's output into ``log_file``, in its own session (it
    outlives kukeond, as the shim's does); None when the task has no output pipe left. It
    rotates the file by ``rotation`` as the shim's did, numbering on from the kept files.
    ``terminal``: a TTY task's; its replacement appends the terminal's output as it is and
    holds a writer of its stdin FIFO, as the shim's logger did. ``cgroup_procs``: the
    cgroups it joins, as the shim's did (its realm's copiers')."""
    if terminal is None:
        streams = _output_streams(task_pid)
    else:
        output = _open_terminal_output(task_pid, log_file)
        streams = {output: "terminal"} if output is not None else {}
    try:
        if not streams:
            return None
        return subprocess.Popen(
            logger_command(
                log_file.absolute(),
                streams=streams,
                ready_fd=None,
                terminal_of=terminal.stdin.absolute() if terminal is not None else None,
                rotation=rotation,
                cgroup_procs=cgroup_procs,
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=tuple(streams),
            start_new_session=True,
            env=spawn_environment(),
        )
    finally:
        for fd in streams:
            os.close(fd)


def _hung_up(fd: int) -> bool:
    watch = select.poll()
    watch.register(fd, 0)
    return any(event & select.POLLHUP for _, event in watch.poll(0))


def start_keeper(
    task_pid: int, log_file: Path, terminal: Terminal | None = None
) -> subprocess.Popen[bytes] | None:
    """A keeper of the running task's output pipes, for a task whose keeper was killed or
    never forked (its logger started by an older kukeond), in its own session; returned
    once it took its name, so ``find_copier(keeper=True)`` finds it. The pipes are opened
    through the task's logger, else (a plain task) through the task's stdout and stderr;
    None when neither is there (a terminal whose logger and keeper are both gone)."""
    logger = find_copier(task_pid, log_file)
    streams = held_streams(logger) if logger is not None else {}
    if not streams and terminal is None:
        streams = _output_streams(task_pid)
    for fd in [fd for fd in streams if _hung_up(fd)]:  # no writer: nothing more to keep
        os.close(fd)
        del streams[fd]
    ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
    try:
        if not streams:
            return None
        process = subprocess.Popen(
            keeper_command(
                log_file.absolute(),
                streams,
                ready_write,
                terminal_of=terminal.stdin.absolute() if terminal is not None else None,
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(*streams, ready_write),
            start_new_session=True,
            env=spawn_environment(),
        )
        os.close(ready_write)
        ready_write = -1
        while os.read(ready_read, 1):  # until it closes its end: named (or dead)
            pass
        return process
    finally:
        for fd in (*streams, ready_read, ready_write):
            if fd >= 0:
                os.close(fd)
