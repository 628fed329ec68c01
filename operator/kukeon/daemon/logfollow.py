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
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from kukeon.daemon.logchunks import (
    complete_end,
    file_size,
    last_lines_start,
    lines_in_chunks,
)
from kukeon.runtime.containerd.crilog import rotated_logs
from kukeon.runtime.containerd.logrecords import LogRecord, parse_lines, parse_record
from kukeon.runtime.hostfiles import is_terminal_log

log = logging.getLogger(__name__)

Identity = tuple[int, int]
"""A file's device and inode: what a path names may change, an open file's does not."""


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


@dataclass(frozen=True, slots=True)
class _Span:
    """A stretch of a file of the log to read: ``listed`` (None: the file held) from
    ``start`` to ``end`` (None: its end); ``done``: its writer has moved on (a rotated file),
    so what ends it without a newline is read too (``_chunk_records``)."""

    listed: Listed | None
    start: int
    end: int | None
    done: bool


def _chunk_records(
    lines: list[bytes], last: bool, done: bool, raw: bool | None, *, terminal: bool = False
) -> list[LogRecord]:
    """A chunk's records (see ``logchunks.lines_in_chunks``); ``terminal``: of a terminal's
    log (its file marked so), every line raw; else ``raw``: whether the file's records
    before were raw lines (an unmarked terminal log's, an older kukeon's; None: none yet)."""
    if not lines or lines[-1].endswith(b"\n"):
        return list(parse_lines(lines, terminal=terminal))
    records = list(parse_lines(lines[:-1], terminal=terminal))
    piece = replace(parse_record(lines[-1], terminal=terminal), partial=True)
    if not last:  # a piece of a terminal's line longer than a chunk
        if not terminal:
            piece = LogRecord(time=None, stream=None, partial=True, text=lines[-1])
        return [*records, piece]
    if records:
        raw = records[-1].time is None
    if done and (terminal or raw is not False):  # a terminal's raw bytes (or nothing else)
        records.append(piece)
    return records  # in a file of records, one cut short (a killed logger's) is left out


def _records_in_chunks(stream: BinaryIO, span: _Span) -> Iterator[list[LogRecord]]:
    end = span.end if span.end is not None else file_size(stream)
    terminal = is_terminal_log(stream.fileno())
    raw: bool | None = None
    for lines, last in lines_in_chunks(stream, span.start, end):
        records = _chunk_records(lines, last, span.done, raw, terminal=terminal)
        if records:
            raw = records[-1].time is None
        yield records


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
        None; with ``since``, files last written before it are not read: a terminal's
        current one neither, its lines having no time), oldest first, a chunk at a time (at
        most ``logchunks.CHUNK_BYTES`` of a file: each ``next`` reads and parses one, so a
        reader holds one chunk, not the log); the next ``read`` goes on from the end of the
        last complete one of the current file."""
        older = self._rotated_before(since)
        end = self._complete_end()
        if self._terminal_quiet_since(since):
            return  # the rotated files are older still: none listed
        if lines is None:
            spans = [_Span(listed, 0, None, done=True) for listed in older]
            spans.append(_Span(None, 0, end, done=False))
        else:
            spans = self._tail_spans(lines, older, end)
        for span in spans:
            yield from self._span_records(span)

    def _complete_end(self) -> int:
        """Where the current file's complete lines end (now): the history ends there and
        the next ``read`` goes on from there."""
        if self._stream is None:
            return 0
        self._offset = complete_end(self._stream, file_size(self._stream))
        return self._offset

    def _terminal_quiet_since(self, since: datetime | None) -> bool:
        """Whether the file held is a terminal's last written before ``since``."""
        if since is None or self._stream is None or not is_terminal_log(self._stream.fileno()):
            return False
        return os.fstat(self._stream.fileno()).st_mtime < since.timestamp()

    def _tail_spans(self, lines: int, older: list[Listed], end: int) -> list[_Span]:
        """What to read for the last ``lines`` lines: the current file's last ones, then,
        newest first, the last ones of each rotated file until there are enough (more when
        the first one began in the file before: a terminal's long line, cut), the piece of
        a line that ends a rotated file too. Each file is read backwards, a block at a
        time, and only the positions are kept."""
        taken, whole = 0, 0
        starts_file = True
        spans: list[_Span] = []
        if self._stream is not None:
            start, taken, _ = last_lines_start(self._stream, end, lines)
            starts_file = start == 0
            spans.append(_Span(None, start, end, done=False))
        for listed in reversed(older):
            wanted = lines - taken - whole
            # Enough lines, unless the first one began in this file (a long line cut).
            if wanted <= 0 and not (starts_file and _ends_open(listed)):
                break
            stream = _open_listed(listed)
            if stream is None:  # said where it would be read (a Gap's record)
                spans.insert(0, _Span(listed, 0, None, done=True))
                whole, starts_file = whole + 1, False
                continue
            with stream:
                size = file_size(stream)
                start, _, found = last_lines_start(
                    stream,
                    complete_end(stream, size),
                    max(wanted, 0),
                    terminal=is_terminal_log(stream.fileno()),
                )
            spans.insert(0, _Span(listed, start, size, done=True))
            whole, starts_file = whole + found, start == 0
        return spans

    def _span_records(self, span: _Span) -> Iterator[list[LogRecord]]:
        """A span's records, a chunk at a time; a rotated file found gone, the notice."""
        if span.listed is None:
            if self._stream is not None and span.end is not None:
                yield from _records_in_chunks(self._stream, span)
            return
        stream = _open_listed(span.listed)
        if stream is None:
            yield [Gap(self.path, 1).said().record()]
            return
        with stream:
            yield from _records_in_chunks(stream, span)

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

    def read(self) -> list[LogRecord]:
        """The records written since the last read, in one list (see ``read_chunks``)."""
        return [record for chunk in self.read_chunks() for record in chunk]

    def read_chunks(self) -> Generator[list[LogRecord]]:
        """The records written since the last read, a chunk at a time (as ``history``):
        the rest of the file held, then, when the path now names another file (a rotation,
        a new instance's log), the rest of the held one, the rotated files newer than it
        and the new one from its start."""
        yield from self._rest_chunks()
        if not self._replaced():
            return
        yield from self._rest_chunks(done=True)  # its writer has moved on: it is complete
        old, previous = self._stream, _identity(self._stream)
        self._open()  # before the rotated files are listed, as in `history`
        held = _identity(self._stream)
        if old is not None:
            old.close()
        rotated = _rotated_after(self.path, previous, held, self._due)
        self._due = rotated.due
        if rotated.lost:
            yield [Gap(self.path, rotated.lost).said().record()]
        for listed in rotated.files:
            yield from self._span_records(_Span(listed, 0, None, done=True))
        yield from self._rest_chunks()

    def _rest_chunks(self, *, done: bool = False) -> Iterator[list[LogRecord]]:
        """The complete lines written since the last read; ``done``: the file's writer has
        moved on, so what ends it without a newline is read too (``_chunk_records``)."""
        if self._stream is None:
            return
        size = file_size(self._stream)
        if size < self._offset:
            self._offset = 0  # truncated: written afresh
        start = self._offset
        end = size if done else complete_end(self._stream, size, floor=start)
        if end <= start:
            return
        self._offset = end
        yield from _records_in_chunks(self._stream, _Span(None, start, end, done))

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
