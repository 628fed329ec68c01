"""The end of a log file: its writer closing it (inotify's ``IN_CLOSE_WRITE``).

An attachable container's terminal output is appended to its log file by a logger the
containerd shim starts (``runtime.containerd.ttyio``, ``crilog``'s terminal mode), which
copies the last output after the task has exited and then exits, closing the file. A file has no end
of file to wait for, but that close is one: :class:`WriterClosed` watches for it, so an
attach session sends the last output once it is all there, however late the logger is.
Where inotify is not to be had (``OSError`` at the start), the caller falls back on
waiting until the file stays quiet.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)  # the C library kukeond already runs on


def _checked(result: int) -> int:
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return result


class WriterClosed:
    """Whether a writer of ``path`` (the file it is now) closed it since this was made."""

    def __init__(self, path: Path) -> None:
        self._fd = _checked(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        try:
            _checked(_libc.inotify_add_watch(self._fd, os.fsencode(path), IN_CLOSE_WRITE))
        except OSError:
            os.close(self._fd)
            raise
        self._seen = False

    def _drain(self) -> bool:
        try:
            while os.read(self._fd, 4096):
                self._seen = True
        except BlockingIOError:
            pass
        return self._seen

    async def wait(self, *, within: float) -> bool:
        """True once a writer has closed the file (at once if one did already); False when
        none did within ``within`` seconds."""
        if self._drain():
            return True
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(self._fd, wake)
        try:
            await asyncio.wait([ready], timeout=within)
        finally:
            loop.remove_reader(self._fd)
            ready.cancel()
        return self._drain()

    def close(self) -> None:
        os.close(self._fd)
