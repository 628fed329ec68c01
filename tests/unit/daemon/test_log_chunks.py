"""A log's history, and what a follower reads after a rotation, come a bounded chunk at a
time (kukeon.daemon.logchunks): no chunk holds more than CHUNK_BYTES of a file, whatever the
log's length, and the chunks put together are the log, whole or its tail, across rotated
files, terminal lines longer than a chunk and partial records included."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from kukeon.daemon import logchunks
from kukeon.daemon.logchunks import CHUNK_BYTES, last_lines_start, lines_in_chunks
from kukeon.daemon.logfollow import LogFollower
from kukeon.runtime.containerd.crilog import LogRecord


def _record(text: str, tag: str = "F") -> bytes:
    return f"2026-12-05T10:00:00.000000000Z stdout {tag} {text}\n".encode()


def _held(chunk: list[LogRecord]) -> int:
    return sum(len(record.text) for record in chunk)


def _texts(chunks: list[list[LogRecord]]) -> list[bytes]:
    return [record.text for chunk in chunks for record in chunk]


def _big_log(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """Two rotated files and the current one, ~3 MB of 100-byte records."""
    log = tmp_path / "c.log"
    texts = [f"{n:08d} ".encode() + b"x" * 91 for n in range(30_000)]
    for number, part in enumerate((texts[:10_000], texts[10_000:20_000], texts[20_000:]), 1):
        path = log if number == 3 else log.parent / f"c.log.{number}"
        path.write_bytes(b"".join(_record(text.decode()) for text in part))
    return log, texts


def test_a_long_history_comes_in_bounded_chunks(tmp_path: Path) -> None:
    log, texts = _big_log(tmp_path)
    for lines, expected in ((None, texts), (25_000, texts[-25_000:]), (7, texts[-7:])):
        chunks = list(LogFollower(log).history(lines))
        assert _texts(chunks) == expected
        assert max(map(_held, chunks)) <= CHUNK_BYTES


def test_what_a_follower_reads_after_a_rotation_comes_in_bounded_chunks(tmp_path: Path) -> None:
    log, texts = _big_log(tmp_path)
    follower = LogFollower(log)
    assert _texts(list(follower.history(0))) == []
    with log.open("ab") as held:  # the logger's last record, then its rotation
        held.write(_record("last of 3"))
    log.rename(log.parent / "c.log.3")
    log.write_bytes(_record("new"))
    chunks = list(follower.read_chunks())
    assert _texts(chunks) == [b"last of 3", b"new"]  # the held file's rest, then the new one
    follower = LogFollower(log)
    chunks = list(follower.history(None))
    assert _texts(chunks) == [*texts, b"last of 3", b"new"]
    assert max(map(_held, chunks)) <= CHUNK_BYTES


def test_a_terminal_line_longer_than_a_chunk_comes_in_pieces(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    line = b"y" * (3 * CHUNK_BYTES + 5)
    log.write_bytes(b"before\n" + line + b"\nafter\n")
    chunks = list(LogFollower(log).history(None))
    assert max(map(_held, chunks)) <= CHUNK_BYTES
    records = [record for chunk in chunks for record in chunk]
    assert b"".join(r.text + (b"" if r.partial else b"\n") for r in records) == (
        b"before\n" + line + b"\nafter\n"
    )


@pytest.mark.parametrize("seed", range(30))
def test_backwards_and_forwards_agree_with_a_plain_split(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logchunks, "BLOCK_BYTES", 7)  # many blocks, lines across them
    rng = random.Random(seed)
    lines = [
        _record("z" * rng.randint(0, 30), rng.choice("FP")) if rng.random() < 0.8 else b"raw\n"
        for _ in range(rng.randint(0, 20))
    ]
    data = b"".join(lines)
    count = rng.randint(0, 25)
    start, found, whole = last_lines_start(io.BytesIO(data), len(data), count)
    kept = lines[len(lines) - min(count, len(lines)) :]
    assert (start, found) == (len(data) - len(b"".join(kept)), len(kept))
    assert whole == sum(b" stdout P " not in line for line in kept)
    pieces = [
        line
        for chunk, _ in lines_in_chunks(io.BytesIO(data), start, len(data), 16)
        for line in chunk
    ]
    assert b"".join(pieces) == b"".join(kept)
