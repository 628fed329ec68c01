"""`kukectl logs` of an attachable (TTY) container shows a line longer than a whole log file
whole: its terminal logger cuts it into pieces of a file's size, one per file, and a piece
that ends a rotated file (no newline) is joined to what the next file starts with. It was
left out as an unfinished line: the whole log, --tail and -f lost all but the last piece."""

from __future__ import annotations

from pathlib import Path

from kukeon.daemon.logfollow import LogFollower
from kukeon.runtime.containerd.crilog import LogRecord, LogRotation, RenderOptions, render
from tests.unit.runtime.test_ttylog_rotation import TerminalLogger

SIZE = 4096


def _text(records: list[LogRecord]) -> bytes:
    return render(records, RenderOptions(), open_line=False)


def _long_line_logged(log: Path) -> bytes:
    """A terminal's output with a line three and a half files long, as its logger keeps it."""
    written = b"before\r\n" + b"".join(b"%07d" % n for n in range(2000)) + b"\r\nafter\r\n"
    logger = TerminalLogger(log, LogRotation(max_size=SIZE, max_files=100))
    logger.write(written)
    assert logger.close() == 0
    assert len(list(log.parent.glob("c.log.*"))) >= 3  # the line is in pieces
    return written


def test_the_whole_log_shows_a_line_longer_than_a_file(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    written = _long_line_logged(log)
    assert _text(LogFollower(log).tail(None)) == written.replace(b"\r\n", b"\r\n")


def test_tail_shows_the_long_line_whole(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    written = _long_line_logged(log)
    lines = written.split(b"\n")
    assert _text(LogFollower(log).tail(2)) == lines[-3] + b"\n" + lines[-2] + b"\n"


def test_a_follower_shows_the_piece_that_ended_the_file_it_held(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"start\r\n" + b"x" * 100)  # the logger cut a long line here
    follower = LogFollower(log)
    assert _text(follower.tail(None)) == b"start\r\n"  # still being written: not yet
    log.rename(tmp_path / "c.log.1")
    log.write_bytes(b"y" * 50 + b"\r\n")
    assert _text(follower.read()) == b"x" * 100 + b"y" * 50 + b"\r\n"


def test_a_record_log_cut_short_is_still_left_out(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    (tmp_path / "c.log.1").write_bytes(
        b"2026-12-05T10:00:00.000000000Z stdout F whole\n2026-12-05T10:00:00.0000"
    )
    log.write_bytes(b"2026-12-05T10:00:01.000000000Z stdout F next\n")
    assert _text(LogFollower(log).tail(None)) == b"whole\nnext\n"


def test_a_carriage_return_splits_no_record_when_followed(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"")
    follower = LogFollower(log)
    follower.tail(None)
    with log.open("ab") as current:
        current.write(b"2026-12-05T10:00:00.000000000Z stdout F 10%\r20%\r\n")
    [record] = follower.read()
    assert record.text == b"10%\r20%\r"
