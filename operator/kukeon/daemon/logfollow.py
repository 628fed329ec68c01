"""Reading a container's log for the log route: what it kept, then what comes.

A container's logger rotates its file (``crilog.LogRotation``): ``<c>.log`` is renamed
``<c>.log.<n>`` (``n`` growing) and a new ``<c>.log`` is opened, and the oldest files are
removed. A follower holds the file it reads open, so whatever the logger wrote is read to
the end even once the path names another file (a rotation; ``CellFiles.start_new_log``
renaming it for a new instance) or none (the cell's files removed as it is deleted): the
lines written just before a rotation or an exit are never lost to a rename or a removal.
Once the path names another file, the held one is read to its end once more (the logger
writes to a file only until it renames it), then the rotated files newer than it (several
rotations between two reads), then the new file, as ``tail -F`` does, so a follower sees
every record in order; a follower that lags by more than the kept files misses what was
removed before it got there. That is not silent: the logger numbers the files one by one,
so the numbers missing between the file followed and the oldest one kept are the files
lost (:class:`Gap`); kukeond's log says it, a ``logs`` stream gets a ``[kukeon]`` record
in its place, an attach session a notice on its stderr channel. The logger writes whole
records, so a follower reads complete lines only and leaves a partial one for the next
read. :class:`ByteFollower` follows an attachable container's terminal log (raw bytes, for
an attach session) the same way, by the bytes. The kept files are listed by name and
identity and opened one at a time, when reached (a file found removed or replaced by then
is a Gap too: the logger removed it), so a reader holds at most two files open whatever
``containerLogMaxFiles`` is. Every method blocks: callers run them off the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from kukeon.runtime.containerd.crilog import LogRecord, parse_lines, rotated_logs

log = logging.getLogger(__name__)

Identity = tuple[int, int]
"""A file's device and inode: what a path names may change, an open file's does not."""


def _complete_lines(data: bytes) -> bytes:
    return data[: data.rfind(b"\n") + 1]


def _split_lines(data: bytes) -> list[bytes]:
    """Lines with their newline, split at newlines only (``bytes.splitlines`` also splits
    at a carriage return, which a terminal's line and a record's text may hold)."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _identity(stream: BinaryIO | None) -> Identity | None:
    if stream is None:
        return None
    status = os.fstat(stream.fileno())
    return status.st_dev, status.st_ino


def _identity_of(path: Path) -> Identity | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


Listed = tuple[Identity, Path]
"""A kept file as it was listed: opened only when its turn comes."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Where a reader lost ``files`` of the log: removed by its logger (the oldest beyond
    ``containerLogMaxFiles``) before the reader got to them."""

    path: Path
    files: int

    def notice(self) -> str:
        files, were = ("log files", "were") if self.files != 1 else ("log file", "was")
        return (
            f"[kukeon] {self.files} {files} of this output {were} removed before this reader "
            "got to them (it lagged by more than containerLogMaxFiles): their lines are "
            "missing here"
        )

    def record(self) -> LogRecord:
        """The notice as a record of the log, where the lines are missing."""
        seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
        return LogRecord(time=stamp, stream="stderr", partial=False, text=self.notice().encode())

    def said(self) -> Gap:
        """Said in kukeond's log (once per gap)."""
        log.warning(
            "a reader of %s lagged by more than the kept files: %d file(s) were removed "
            "before it read them",
            self.path,
            self.files,
        )
        return self


def _number(listed: Listed) -> int:
    return int(listed[1].name.rsplit(".", 1)[1])


def _number_due(listed: list[Listed], held: Identity | None) -> int:
    """The number the held file has or will have once rotated (listed after it was opened:
    the logger numbers on from the last kept file, one by one)."""
    for identity, path in listed:
        if identity == held:
            return _number((identity, path))
    return _number(listed[-1]) + 1 if listed else 1


def _list_rotated(path: Path, since: datetime | None = None) -> list[Listed]:
    """The files ``path`` was rotated into, oldest first; with ``since``, those last
    written before it (so all of whose records are) left out."""
    listed: list[Listed] = []
    for rotated in rotated_logs(path):
        try:
            status = os.stat(rotated)
        except FileNotFoundError:
            continue  # removed by the logger meanwhile: older than what is left
        if since is not None and status.st_mtime < since.timestamp():
            continue
        listed.append(((status.st_dev, status.st_ino), rotated))
    return listed


def _open_listed(listed: Listed) -> BinaryIO | None:
    """The listed file, open; None when it is gone: removed by the logger since it was
    listed (the reader lagged by more than the kept files), or its name taken by a new
    instance's file (numbering starts again once the ending one's are moved aside)."""
    identity, path = listed
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        return None
    if _identity(stream) != identity:
        stream.close()
        return None
    return stream


def _lines(stream: BinaryIO, last: int | None) -> tuple[list[bytes], bool]:
    """The lines of a rotated file (its ``last`` complete ones, and what ends it without a
    newline: the piece of a terminal's line longer than a file, cut by its logger), and
    whether they are all of its lines."""
    if last is None:
        return _split_lines(stream.read()), True
    kept: deque[bytes] = deque(maxlen=last + 1)
    count = 0
    for line in stream:
        kept.append(line)
        count += 1
    if kept and kept[-1].endswith(b"\n") and len(kept) > last:
        kept.popleft()
    return list(kept), len(kept) == count


def _file_records(lines: list[bytes]) -> list[LogRecord]:
    """The records of a file its logger is done with: a piece of a terminal's line that
    ends it is partial (joined to what the next file starts with); in a file of records,
    one cut short (a killed logger's, see ``crilog``) is left out."""
    records = list(parse_lines(lines))
    if lines and not lines[-1].endswith(b"\n"):
        last = records.pop()
        if all(record.time is None for record in records):  # a terminal's: raw bytes
            records.append(replace(last, partial=True))
    return records


def _whole_lines(records: list[LogRecord]) -> int:
    return sum(not record.partial for record in records)


def _ends_open(listed: Listed) -> bool:
    """Whether a rotated file ends inside a line (a terminal's line its logger cut)."""
    stream = _open_listed(listed)
    if stream is None:
        return False
    with stream:
        if not os.fstat(stream.fileno()).st_size:
            return False
        stream.seek(-1, os.SEEK_END)
        return stream.read(1) != b"\n"


@dataclass(frozen=True, slots=True)
class _Rotated:
    files: list[Listed]
    """To read, oldest first."""
    lost: int
    """Files removed before they were listed, between the one followed and ``files``."""
    due: int
    """The number the file now held has or will have."""


def _rotated_after(
    path: Path, previous: Identity | None, held: Identity | None, previous_due: int | None
) -> _Rotated:
    """The files ``path`` was rotated into that are newer than the one that was followed
    (all of them when it is not among them: removed, or now a previous instance's) and
    older than the one now held, oldest first. Listed after that one was opened, so
    it may have been rotated too meanwhile: the files after it are read after it, once
    the path names another file again (a busy terminal rotates every few milliseconds).
    ``previous_due``: the number the one followed was to get; when it is no longer kept,
    the numbers between it and the oldest kept one are files lost."""
    listed = _list_rotated(path)
    identities = [identity for identity, _ in listed]
    start = identities.index(previous) + 1 if previous in identities else 0
    end = identities.index(held) if held in identities else len(listed)
    lost = 0
    if not start and listed and previous_due is not None:
        # A new instance's files are numbered from 1 again: no loss counted.
        lost = max(_number(listed[0]) - previous_due - 1, 0)
    return _Rotated(files=listed[start:end], lost=lost, due=_number_due(listed, held))


def _rotated_before(path: Path, held: Identity | None) -> list[Listed]:
    """The files ``path`` was rotated into that are older than the one held, oldest
    first. Listed after it was opened, so it may be among them (rotated since): those
    before it then; all when it is not (the path's current file)."""
    listed = _list_rotated(path)
    identities = [identity for identity, _ in listed]
    end = identities.index(held) if held in identities else len(listed)
    return listed[:end]


def _read_listed(listed: Listed, last: int | None) -> tuple[list[bytes], bool] | None:
    """``_lines`` of a listed file, the file open only meanwhile; None when it is gone
    (see ``_open_listed``)."""
    stream = _open_listed(listed)
    if stream is None:
        return None
    with stream:
        return _lines(stream, last)


class LogFollower:
    """The records of one container's log, the kept ones first, then the new ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream: BinaryIO | None = None
        self._offset = 0
        self._open()
        self._due = _number_due(_list_rotated(path), _identity(self._stream))
        """The number the file held has or will have (see ``_rotated_after``)."""

    def _open(self) -> None:
        try:
            self._stream = self.path.open("rb")
        except FileNotFoundError:
            self._stream = None
        self._offset = 0

    def tail(self, lines: int | None, since: datetime | None = None) -> list[LogRecord]:
        """The last ``lines`` records of the log (all when None), in one list."""
        return [record for chunk in self.history(lines, since) for record in chunk]

    def history(
        self, lines: int | None, since: datetime | None = None
    ) -> Generator[list[LogRecord]]:
        """The log's last ``lines`` records, across its rotated files (all of them when
        None, one file's records at a time, oldest first; with ``since``, files last
        written before it are not read); the next ``read`` goes on from the end of the
        last complete one of the current file."""
        older = self._rotated_before(since)
        current, starts_file = self._tail_current(lines)
        if lines is None:
            for listed in older:
                yield self._records_of(listed, None)[0]
            yield list(parse_lines(current))
            return
        before: list[LogRecord] = []
        for listed in reversed(older):
            wanted = lines - len(current) - _whole_lines(before)
            # Enough lines, unless the first one began in this file (a long line cut).
            if wanted <= 0 and not (starts_file and _ends_open(listed)):
                break
            records, starts_file = self._records_of(listed, max(wanted, 0))
            before[:0] = records
        yield before + list(parse_lines(current))

    def _records_of(self, listed: Listed, last: int | None) -> tuple[list[LogRecord], bool]:
        """A listed file's records (its ``last`` whole ones, and a piece of a line that ends
        it), or the notice that it is gone; and whether they are all the file has."""
        read = _read_listed(listed, last)
        if read is None:
            return [Gap(self.path, 1).said().record()], False
        lines, whole = read
        return _file_records(lines), whole

    def _rotated_before(self, since: datetime | None) -> list[Listed]:
        """The rotated files older than the one held, oldest first.

        Listed after that file was opened, so it may have been rotated since (a busy
        container rotates every few milliseconds): the files before it in the listing when
        it is there; all when the path still names it (they were rotated before it was);
        none when it is neither (rotated and removed already, or a previous instance's now:
        every file listed is newer, ``read`` goes on with them)."""
        held = _identity(self._stream)
        listed = _list_rotated(self.path, since)
        identities = [identity for identity, _ in listed]
        if held in identities:
            end = identities.index(held)
        elif held is not None and _identity_of(self.path) == held:
            end = len(listed)
        else:
            end = 0
        return listed[:end]

    def _tail_current(self, lines: int | None) -> tuple[list[bytes], bool]:
        """The current file's last ``lines`` complete lines, and whether they start it."""
        if self._stream is None:
            return [], True
        if lines is None:
            kept = _split_lines(self._stream.read())
            count = len(kept)
        else:
            window: deque[bytes] = deque(maxlen=lines)
            count = 0
            for line in self._stream:
                window.append(line)
                count += 1
            kept = list(window)
        self._offset = self._stream.tell()
        starts = len(kept) == count
        if kept and not kept[-1].endswith(b"\n"):
            self._offset -= len(kept.pop())
        return kept, starts

    def read(self) -> list[LogRecord]:
        """The records written since the last read: the rest of the file held, then, when
        the path now names another file (a rotation, a new instance's log), the rest of the
        held one, the rotated files newer than it and the new one from its start."""
        records = self._read_rest()
        if not self._replaced():
            return records
        records += self._read_rest(done=True)  # its writer has moved on: it is complete
        old, previous = self._stream, _identity(self._stream)
        self._open()  # before the rotated files are listed, as in `history`
        held = _identity(self._stream)
        if old is not None:
            old.close()
        rotated = _rotated_after(self.path, previous, held, self._due)
        self._due = rotated.due
        if rotated.lost:
            records.append(Gap(self.path, rotated.lost).said().record())
        for listed in rotated.files:
            records += self._records_of(listed, None)[0]
        return records + self._read_rest()

    def _read_rest(self, *, done: bool = False) -> list[LogRecord]:
        """The complete lines written since the last read; ``done``: the file's writer has
        moved on, so what ends it without a newline is read too (``_file_records``)."""
        if self._stream is None:
            return []
        if os.fstat(self._stream.fileno()).st_size < self._offset:
            self._offset = 0  # truncated: written afresh
        self._stream.seek(self._offset)
        data = self._stream.read()
        if done:
            self._offset += len(data)
            return _file_records(_split_lines(data))
        complete = _complete_lines(data)
        self._offset += len(complete)
        return list(parse_lines(_split_lines(complete)))

    def _replaced(self) -> bool:
        named = _identity_of(self.path)
        if named is None:
            return False  # renamed or removed, and no new file yet: the one held is current
        return named != _identity(self._stream)

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None


class ByteFollower:
    """The bytes of an attachable container's terminal log written after this was made
    (``from_start``: the kept files' too, oldest first), across its rotations: the file
    held to its end, then the files rotated since, then the one the path names."""

    def __init__(self, path: Path, *, from_start: bool = False) -> None:
        self.path = path
        # Read in order; the last one is the newest, held open; the others are opened when
        # they come to the front (two open at most); a Gap where files were lost.
        self._streams: deque[BinaryIO | Listed | Gap] = deque()
        self._offset = 0
        newest: BinaryIO | None = None
        with contextlib.suppress(FileNotFoundError):
            newest = path.open("rb")
            self._streams.append(newest)
        self._due = _number_due(_list_rotated(path), _identity(newest))
        if from_start:
            self._streams.extendleft(reversed(_rotated_before(path, _identity(newest))))
        elif newest is not None:
            self._offset = os.fstat(newest.fileno()).st_size

    def read(self, limit: int) -> bytes:
        """At most ``limit`` bytes written since the last read; empty when there are none
        (files lost on the way are skipped: see ``read_or_gap``)."""
        while isinstance(chunk := self.read_or_gap(limit), Gap):
            pass
        return chunk

    def read_or_gap(self, limit: int) -> bytes | Gap:
        """``read``, or where files were lost (removed before this reader got to them), in
        its place among the bytes."""
        while True:
            front = self._front()
            if self._streams and isinstance(gap := self._streams[0], Gap):
                self._streams.popleft()
                return gap
            if front is not None:
                data = self._read_front(front, limit)
                if data:
                    return data
                if len(self._streams) > 1:
                    front.close()  # a rotated file, read to its end
                    self._streams.popleft()
                    self._offset = 0
                    continue
            newest = self._newest()
            named = _identity_of(self.path)
            if named is None or named == newest:
                return b""  # no rotation (or the new file not there yet): nothing more
            # Rotated: its writer has moved on, so the front file is complete; it is read
            # to its end (the loop), then the files rotated after it, then the new one.
            try:
                fresh = self.path.open("rb")
            except FileNotFoundError:
                return b""
            held = _identity(fresh)
            rotated = _rotated_after(self.path, newest, held, self._due)
            self._due = rotated.due
            if rotated.lost:
                self._streams.append(Gap(self.path, rotated.lost).said())
            self._streams.extend(rotated.files)
            self._streams.append(fresh)
            if newest is None:
                self._offset = 0

    def _newest(self) -> Identity | None:
        """The identity of the newest file known (the last one, open or only listed)."""
        newest = self._streams[-1] if self._streams else None
        if newest is None or isinstance(newest, Gap):
            return None
        return newest[0] if isinstance(newest, tuple) else _identity(newest)

    def _front(self) -> BinaryIO | None:
        """The file to read now, opened if it was only listed (one found gone becomes a
        Gap: the logger removed it before this reader got to it)."""
        while self._streams:
            front = self._streams[0]
            if isinstance(front, Gap):
                return None
            if not isinstance(front, tuple):
                return front
            opened = _open_listed(front)
            if opened is None:
                self._streams[0] = Gap(self.path, 1).said()
                return None
            self._streams[0] = opened
            self._offset = 0
        return None

    def _read_front(self, stream: BinaryIO, limit: int) -> bytes:
        if os.fstat(stream.fileno()).st_size < self._offset:
            self._offset = 0  # truncated: written afresh
        stream.seek(self._offset)
        data = stream.read(limit)
        self._offset += len(data)
        return data

    def close(self) -> None:
        while self._streams:
            stream = self._streams.popleft()
            if not isinstance(stream, tuple | Gap):
                with contextlib.suppress(OSError):
                    stream.close()
