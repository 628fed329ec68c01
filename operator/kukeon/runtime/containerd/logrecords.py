"""What a reader makes of a container's log files (:mod:`crilog` writes them): its CRI
records (``<time> <stream> <F|P> <text>``), or a terminal's raw lines, parsed and rendered
as a user reads them (``kukectl logs``: the text, ``P`` records joined, ``--timestamps``,
``--since``, one stream).

A file holds one or the other, and its mode says which (``hostfiles.TERMINAL_LOG_MARK``,
set by its writer before its first byte): a terminal's line is the container's bytes, so
one shaped as a record (``2026-01-01T00:00:00Z stderr P x``) is read as text, never for
its time, stream or ``P`` (it was believed: a tenant's program forged times, the stderr
stream, joins, and what ``--since`` kept). A terminal's lines carry no time (its logger
appends the bytes as they come) and are stdout: ``--timestamps`` shows ``-`` in place of
a time, and ``--since`` keeps or skips a terminal's files whole, by when they were last
written (:mod:`kukeon.daemon.logfollow`). A line of a file of records that is no record (a
log written before this format, an older kukeon's terminal log, not marked) is raw too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

_RECORD = re.compile(
    rb"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) "
    rb"(?P<stream>stdout|stderr) (?P<tag>[FP]) (?P<text>.*)$"
)


@dataclass(frozen=True)
class LogRecord:
    """One record of a log file; ``time`` is None for raw lines (a TTY's output, which its
    own logger appends as is: ``stream`` stdout, where a terminal writes both; or a line
    that is no record in a log of records: ``stream`` None)."""

    time: str | None
    stream: str | None
    partial: bool
    text: bytes

    def at(self) -> datetime | None:
        return datetime.fromisoformat(self.time) if self.time is not None else None


def parse_record(line: bytes, *, terminal: bool = False) -> LogRecord:
    """A line of the file without its newline; ``terminal``: of a terminal's log (its file
    marked so: ``hostfiles.is_terminal_log``), the container's bytes whatever they look
    like (a line shaped as a record was believed: its time, stream and ``P``). One shaped
    as a record is raw when its time is no real one (a month 99 was a 500 of every
    ``sinceTime`` read); the loggers write real times (RFC 3339 UTC, nanoseconds)."""
    if terminal:
        return LogRecord(time=None, stream="stdout", partial=False, text=line)
    match = _RECORD.match(line)
    try:
        if match is not None and datetime.fromisoformat(match["time"].decode()):
            return LogRecord(
                time=match["time"].decode(),
                stream=match["stream"].decode(),
                partial=match["tag"] == b"P",
                text=match["text"],
            )
    except ValueError:
        pass
    return LogRecord(time=None, stream=None, partial=False, text=line)


def parse_lines(lines: Iterable[bytes], *, terminal: bool = False) -> Iterator[LogRecord]:
    for line in lines:
        yield parse_record(line.rstrip(b"\n"), terminal=terminal)


@dataclass(frozen=True)
class RenderOptions:
    timestamps: bool = False
    since: datetime | None = None
    stream: str | None = None
    """``stdout`` or ``stderr``: only that stream's records (a TTY's raw output counts as
    stdout, where a terminal writes both); None: both, interleaved as written."""

    def keep(self, records: list[LogRecord]) -> list[LogRecord]:
        """The records of the chosen stream (all of them when none is chosen)."""
        if self.stream is None:
            return records
        return [r for r in records if (r.stream or "stdout") == self.stream]


def render(records: Iterable[LogRecord], options: RenderOptions, *, open_line: bool) -> bytes:
    """The text a user reads: the records' text, a ``P`` record joined to what continues it,
    each line prefixed by its time with ``timestamps``; records before ``since`` skipped.

    ``open_line`` says whether the previous chunk ended inside a line (after a ``P``
    record), so the prefix is not repeated mid-line when following.
    """
    out: list[bytes] = []
    for record in records:
        if options.since is not None:
            when = record.at()
            if when is not None and when < options.since:
                continue
        if options.timestamps and not open_line:
            out.append((record.time or "-").encode() + b" ")
        out.append(record.text)
        if record.partial:
            open_line = True
        else:
            out.append(b"\n")
            open_line = False
    return b"".join(out)


def ends_open(records: list[LogRecord]) -> bool:
    return bool(records) and records[-1].partial


def plain_text(data: bytes) -> str:
    """A whole log file's content as a user reads it (no times, no stream tags)."""
    return render(parse_lines(data.splitlines()), RenderOptions(), open_line=False).decode(
        errors="replace"
    )
