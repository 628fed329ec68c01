"""A log file read in bounded pieces, forwards and backwards, for the log route.

A container's log is up to ``containerLogMaxFiles`` x ``containerLogMaxSize`` (10 MiB a
file by default); its history is read, parsed and rendered a chunk at a time (at most
:data:`CHUNK_BYTES` of a file, each in its own thread call) and sent before the next is
read, so a reader holds a few hundred KiB whatever the log's length, and the event loop
never waits on a whole file. A tail is found by reading backwards from a file's end, a block
at a time, keeping only the beginning of each line (enough to know whether it is a partial
record), then read forwards like the rest. Every function here blocks: for a thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import BinaryIO

from kukeon.runtime.containerd.logrecords import parse_record

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
"""The most of a file one chunk of a history holds (a line longer than that, a terminal's
raw output, is passed on in pieces of that size)."""
BLOCK_BYTES = 64 * 1024
"""How much of a file is read at a time going backwards."""
HEAD_BYTES = 80
"""How much of a line's beginning tells whether it is a partial record (time, stream, tag)."""


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their newline, split at newlines only (``bytes.splitlines`` also splits
    at a carriage return, which a terminal's line and a record's text may hold)."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def lines_in_chunks(
    stream: BinaryIO, start: int, end: int, limit: int = CHUNK_BYTES
) -> Iterator[tuple[list[bytes], bool]]:
    """The lines of the file's bytes ``[start, end)``, about ``limit`` bytes of them at a
    time, each time with whether it is the last. Only the last may end without a newline
    (what follows the region's last newline), or a chunk whose one line is a piece of a line
    longer than ``limit``. A file found shorter (truncated meanwhile) ends there."""
    stream.seek(start)
    position, carry = start, b""
    while position < end:
        data = stream.read(min(limit - len(carry), end - position))
        if not data:
            break
        position += len(data)
        data = carry + data  # at most ``limit``: what is carried is less
        if position >= end:
            yield split_lines(data), True
            return
        cut = data.rfind(b"\n") + 1
        if not cut and len(data) < limit:
            carry = data  # a line not ended yet, shorter than a chunk: read on
            continue
        cut = cut or len(data)  # a line longer than a chunk: this piece of it
        carry = data[cut:]
        yield split_lines(data[:cut]), False
    yield ([carry] if carry else []), True


def complete_end(stream: BinaryIO, end: int, *, floor: int = 0) -> int:
    """The offset just after the last newline between ``floor`` and ``end`` (``floor`` when
    there is none there)."""
    position = end
    while position > floor:
        size = min(BLOCK_BYTES, position - floor)
        position -= size
        stream.seek(position)
        found = stream.read(size).rfind(b"\n")
        if found >= 0:
            return position + found + 1
    return floor


def _line_heads_backwards(stream: BinaryIO, end: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, head)`` of each complete line of the file before ``end`` (just after a
    newline), the last one first: where it starts and its first ``HEAD_BYTES``. Holds a
    block and a head, however long the lines."""
    position, line_end, carry = end, end, b""
    while position > 0:
        size = min(BLOCK_BYTES, position)
        position -= size
        stream.seek(position)
        data = stream.read(size) + carry  # the file's bytes from ``position`` on
        # The newline that ends the line being looked at is left out of the search.
        found = data.rfind(b"\n", 0, line_end - 1 - position)
        while found >= 0:
            line_end = position + found + 1
            yield line_end, data[found + 1 : found + 1 + HEAD_BYTES].split(b"\n", 1)[0]
            found = data.rfind(b"\n", 0, found)
        carry = data[:HEAD_BYTES]
    if line_end > 0:
        yield 0, carry.split(b"\n", 1)[0]


def last_lines_start(
    stream: BinaryIO, end: int, count: int, *, terminal: bool = False
) -> tuple[int, int, int]:
    """Where the last ``count`` complete lines before ``end`` (just after a newline) begin;
    how many there are and how many of them are whole records (not a ``P`` record's
    piece; ``terminal``: a terminal's log, whose lines are all whole, whatever they look
    like)."""
    start, found, whole = end, 0, 0
    if count <= 0:
        return start, found, whole
    for offset, head in _line_heads_backwards(stream, end):
        start, found = offset, found + 1
        whole += not parse_record(head, terminal=terminal).partial
        if found == count:
            break
    return start, found, whole


def file_size(stream: BinaryIO) -> int:
    return os.fstat(stream.fileno()).st_size
