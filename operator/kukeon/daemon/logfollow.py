"""Reading a container's log file for the log route: its last lines, then what comes.

A follower holds the file it reads open, so whatever its writer (the shim's logger) wrote
is read to the end even once the path names another file (``CellFiles.start_new_log``
renames it for a new instance) or none (the cell's files are removed as it is deleted):
the lines written just before a container exits are never lost to a rename or a removal.
The logger writes whole records, so a follower reads complete lines only and leaves a
partial one for the next read. Every method blocks: callers run them off the event loop.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import BinaryIO

from kukeon.runtime.containerd.crilog import LogRecord, parse_lines


def _complete_lines(data: bytes) -> bytes:
    return data[: data.rfind(b"\n") + 1]


class LogFollower:
    """The records of one container's log file, the last ones first, then the new ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream: BinaryIO | None = None
        self._offset = 0
        self._open()

    def _open(self) -> None:
        try:
            self._stream = self.path.open("rb")
        except FileNotFoundError:
            self._stream = None
        self._offset = 0

    def tail(self, lines: int | None) -> list[LogRecord]:
        """The last `lines` records of the file (all when None); the next read goes on from
        the end of the last complete one."""
        if self._stream is None:
            return []
        if lines is None:
            kept = self._stream.read().splitlines(keepends=True)
        else:
            kept = list(deque(self._stream, maxlen=lines)) if lines > 0 else []
            self._stream.seek(0, os.SEEK_END)
        self._offset = self._stream.tell()
        if kept and not kept[-1].endswith(b"\n"):
            self._offset -= len(kept.pop())
        return list(parse_lines(kept))

    def read(self) -> list[LogRecord]:
        """The records written since the last read: the rest of the file held, then, when
        the path now names another file (a new instance's log), that one from its start."""
        records = self._read_rest()
        if self._replaced():
            self.close()
            self._open()
            records += self._read_rest()
        return records

    def _read_rest(self) -> list[LogRecord]:
        if self._stream is None:
            return []
        if os.fstat(self._stream.fileno()).st_size < self._offset:
            self._offset = 0  # truncated: written afresh
        self._stream.seek(self._offset)
        complete = _complete_lines(self._stream.read())
        self._offset += len(complete)
        return list(parse_lines(complete.splitlines()))

    def _replaced(self) -> bool:
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed or removed, and no new file yet: the one held is current
        if self._stream is None:
            return True
        held = os.fstat(self._stream.fileno())
        return (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
