"""The end of a log file: its writer closing it (inotify's ``IN_CLOSE_WRITE``).

An attachable container's terminal output is appended to its log file by a logger the
containerd shim starts (``runtime.containerd.ttyio``, ``crilog``'s terminal mode), which
copies the last output after the task has exited and then exits, closing the file. A file has no end
of file to wait for, but that close is one: :class:`WriterClosed` watches for it, so an
attach session sends the last output once it is all there, however late the logger is.
The logger also closes a file when it rotates it (``crilog.LogRotation``), but it has
renamed it ``<log>.<n>`` by then: the close is watched on the directory and only one
reported under the log's own name counts, so a rotation is not taken for the end.
Where inotify is not to be had (``OSError`` at the start), the caller falls back on
waiting until the file stays quiet.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)  # the C library kukeond already runs on


def _checked(result: int) -> int:
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return result


class WriterClosed:
    """Whether a writer closed the file named ``path`` since this was made (a file it
    closed after renaming it, a rotated one, does not count)."""

    def __init__(self, path: Path) -> None:
        os.stat(path)  # no log yet: the caller falls back as without inotify
        self._name = os.fsencode(path.name)
        self._fd = _checked(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        try:
            folder = os.fsencode(path.parent)
            _checked(_libc.inotify_add_watch(self._fd, folder, IN_CLOSE_WRITE))
        except OSError:
            os.close(self._fd)
            raise
        self._seen = False

    def _drain(self) -> bool:
        try:
            while data := os.read(self._fd, 65536):
                self._seen = self._seen or self._named(data)
        except BlockingIOError:
            pass
        return self._seen

    def _named(self, data: bytes) -> bool:
        """Whether one of the events names the log (the name as the file has it at its
        close: a rotated file's is ``<log>.<n>``)."""
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            start = offset + _EVENT.size
            if data[start : start + length].rstrip(b"\0") == self._name:
                return True
            offset = start + length
        return False

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
