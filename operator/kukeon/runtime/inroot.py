"""Paths of a container's file system opened by kukeond from the host, never outside it.

kukeond runs as root on the host; a container's root is the container's to shape (links,
``..``, mounts of its volumes). A path inside it is opened from the root of one of its
processes (``/proc/PID/root``, :func:`open_root`) with ``openat2(RESOLVE_IN_ROOT)``
(:func:`open_in_root`): the path, its symbolic links and ``..`` included, resolves as if
that root were ``/``, and no magic link (``/proc/self/fd/N``) is followed, so nothing of
the host outside the container's file system is ever reached. Blocking: call in a thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Final

SYS_OPENAT2: Final = 437
"""openat2(2)'s number: the same on every architecture (it came after the unification)."""
RESOLVE_NO_MAGICLINKS: Final = 0x02
RESOLVE_IN_ROOT: Final = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def open_in_root(root: int, path: str, flags: int) -> int:
    """``path`` (relative) opened from the directory ``root`` with ``flags`` (close-on-exec
    added), resolved inside ``root`` and through no magic link; OSError naming it."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(
        libc.syscall(SYS_OPENAT2, root, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


def open_root(pid: int) -> int:
    """An ``O_PATH`` descriptor of process ``pid``'s root directory, the pid checked with a
    pidfd to still be that process once it is open."""
    pidfd = os.pidfd_open(pid)
    try:
        root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            signal.pidfd_send_signal(pidfd, 0)  # ESRCH: it exited, the pid may be another's
        except OSError:
            os.close(root)
            raise
        return root
    finally:
        os.close(pidfd)
