"""One kukeond per state directory and per run directory, checked before anything else.

A second kukeond started on the same directories (by hand beside the service, or a unit
started twice) used to get far before it failed on the API socket: its embedded etcd's
start stopped the running etcd as a "stale" one of the same data, its controllers
converged the same node's cells with other paths, and its shutdown removed the running
daemon's socket. Now each directory's ``kukeond.lock`` is held with ``flock`` for the
process's life: the kernel drops it when the process dies, however it dies (a kill -9
leaves nothing that blocks the next start), and a second kukeond stops at once, naming
the one that holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from kukeon.runtime.hostfiles import PRIVATE_FILE_MODE, make_dirs

from .starterrors import StartupError

LOCK_NAME: Final = "kukeond.lock"


class AlreadyRunningError(StartupError):
    """Another process holds a directory's lock."""


def _holder(descriptor: int) -> str:
    """What the holder wrote into the lock file (its pid), for the message."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(descriptor, 32, 0).decode().strip()
        if text.isdigit():
            return f" (pid {text})"
    return ""


def _lock(directory: Path) -> int:
    make_dirs(directory)
    path = directory / LOCK_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunningError(
                f"another kukeond{_holder(descriptor)} is running on {directory} "
                f"(it holds {path}); stop it first, or give this one its own "
                "--state-dir and --run-dir"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


@contextlib.contextmanager
def held(directories: Iterable[Path]) -> Iterator[None]:
    """Hold the lock of each directory (blocking calls: run in a thread or at start)."""
    descriptors: list[int] = []
    try:
        for directory in dict.fromkeys(directories):  # once each, in the order given
            descriptors.append(_lock(directory))
        yield
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
