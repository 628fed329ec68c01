"""TTY stdio for attachable containers, owned by the containerd shim so it outlives kukeond.

How containerd's runc shim (1.6) serves a task created with ``terminal: true`` decides
the design (``CopyConsole`` in ``runtime/v2/runc/platform.go``):

- it reads the stdin FIFO and copies it into the console; when that copy ends — every
  writer of the FIFO has closed it — it shuts the console down and stops copying output.
  So whoever holds the last writer of stdin holds the container's terminal: were it
  kukeond, a kukeond exit (SIGTERM or kill -9) would cut the container off its TTY;
- a FIFO stdout is opened by the shim for writing *and* reading, so writes never fail
  for want of a reader but block once the pipe's 64 KiB are full and nobody drains them:
  with kukeond down for a while, the container would hang on its next write;
- a ``binary://`` stdout instead starts a logging program as the shim's child, with the
  console's output on its fd 3, and waits until it closes fd 5 (ready). It lives exactly
  as long as the task's console.

So the task's stdout is ``binary://`` kukeond's interpreter running the container
logger of :mod:`crilog` in its terminal mode: it opens the stdin FIFO read-write (the
writer that keeps the console alive, for the task's lifetime, whatever happens to
kukeond), signals ready, and appends the terminal's output as it is to the container's
log file, rotated as any container's log is (``crilog.LogRotation``). Nothing of the
container's I/O passes through kukeond: output produced while
kukeond is down is in the log file and never blocks the container. A write the disk
refuses drops that output and the log says so once it takes writes again; the logger
goes on (it was ``sh -c 'cat >> log'``, whose ``cat`` exited on a full disk and took the
FIFO's writer with it: the container lost its terminal for good).

A logger killed while its task runs is replaced by kukeond (``logcopier``), reading the
same pipe of the shim's: the terminal's output waits there meanwhile. A line's start is
logged at once but left in the pipe until its end comes (16 KiB of it at most), and a
logger that starts where the log ends inside a line starts a new one: a write a kill cut
inside a line leaves that piece on a line of its own, the line logged whole after it
(before, the piece ran into the line, whose start the killed logger had taken).

An attach session follows the log file from its end (the output) and opens the stdin FIFO
for writing (the input), so a restarted kukeond has nothing to re-open or adopt: its first
attach just works. The FIFO's path is stable per container.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kukeon.runtime.containerd.crilog import LogRotation, logger_uri
from kukeon.runtime.containerd.tasks import TaskIO
from kukeon.runtime.hostfiles import create_log_file, make_dirs

if TYPE_CHECKING:
    from kukeon.runtime.containerd.tasks import TaskService


def attachable_io(
    *,
    stdin: Path,
    log: Path,
    rotation: LogRotation | None = None,
    cgroup_procs: Sequence[Path] = (),
) -> TaskIO:
    """The ``binary://`` stdout holds a writer of ``stdin`` and appends fd 3 to ``log``,
    rotated by ``rotation`` as a container's records are, its logger in the cgroups of
    ``cgroup_procs`` (``crilog``)."""
    uri = logger_uri(log, terminal_of=stdin, rotation=rotation, cgroup_procs=cgroup_procs)
    return TaskIO(stdin=str(stdin), stdout=uri, terminal=True)


def ensure_fifo(path: Path) -> None:
    """Create the FIFO (0600; directories 0750); a non-FIFO in its place is replaced."""
    make_dirs(path.parent)
    try:
        if stat.S_ISFIFO(path.lstat().st_mode):
            return
        path.unlink()
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)


def _prepare(stdin: Path, log: Path) -> int:
    ensure_fifo(stdin)
    # 0640 before the logger would create it with the shim's umask; marked as a terminal's
    # (raw bytes, no records: hostfiles.TERMINAL_LOG_MARK) before its first byte.
    create_log_file(log, terminal=True)
    # A writer while the shim opens its reader: without one its first read is EOF.
    return os.open(stdin, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


async def create_attachable_task(
    tasks: TaskService,
    container_id: str,
    *,
    stdin: Path,
    log: Path,
    rotation: LogRotation | None = None,
    cgroup_procs: Sequence[Path] = (),
) -> int:
    """Create the task with a TTY whose I/O the shim's logger owns; returns the init pid.

    kukeond holds a writer of the stdin FIFO only while the task is created; by then the
    logger holds its own (the shim waits for it to be ready before answering).
    """
    holder = await asyncio.to_thread(_prepare, stdin, log)
    try:
        io = attachable_io(stdin=stdin, log=log, rotation=rotation, cgroup_procs=cgroup_procs)
        return await tasks.create(container_id, io=io)
    finally:
        with contextlib.suppress(OSError):
            os.close(holder)
