"""A terminal's log (an attachable container's raw output) is marked as such in its file's
mode by its writer, and its reader takes none of its lines for a CRI record, whatever they
look like: a line shaped as one (`2026-01-01T00:00:00Z stderr P x`) was believed, its time
shown and filtered by, its stream kept by `stream=Stderr`, its `P` joined to the next line.
A file of records is read as before; so is one an older kukeon left unmarked."""

from __future__ import annotations

import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.controllers.cellfiles import keep_as_previous, last_logged_line
from kukeon.daemon.logfollow import LogFollower
from kukeon.runtime.containerd.crilog import LogRotation, logger_command, rotated_logs
from kukeon.runtime.containerd.logrecords import (
    LogRecord,
    RenderOptions,
    parse_lines,
    parse_record,
    render,
)
from kukeon.runtime.hostfiles import TERMINAL_LOG_MARK, create_log_file, is_terminal_log
from tests.unit.runtime.test_ttylog_rotation import TerminalLogger

FORGED = (
    b"2020-01-01T00:00:00Z stderr P forged-\r\n"
    b"joined\r\n"
    b"2099-01-01T00:00:00.5Z stderr F from the future\r\n"
)


def _marked(path: Path) -> bool:
    with path.open("rb") as stream:
        return is_terminal_log(stream.fileno())


def _text(records: list[LogRecord], options: RenderOptions | None = None) -> bytes:
    return render(records, options or RenderOptions(), open_line=False)


def test_a_terminal_line_is_its_text_whatever_it_looks_like() -> None:
    line = b"2020-01-01T00:00:00Z stderr P forged"
    assert parse_record(line, terminal=True) == LogRecord(
        time=None, stream="stdout", partial=False, text=line
    )
    assert parse_record(line).partial  # a file of records: a record, as before


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary().map(lambda data: data.replace(b"\n", b"")), max_size=5))
def test_every_terminal_line_renders_as_written(lines: list[bytes]) -> None:
    records = list(parse_lines([line + b"\n" for line in lines], terminal=True))
    since = datetime(2050, 1, 1, tzinfo=UTC)
    assert _text(records, RenderOptions(since=since)) == b"".join(line + b"\n" for line in lines)
    stamped = _text(records, RenderOptions(timestamps=True))
    assert stamped == b"".join(b"- " + line + b"\n" for line in lines)
    assert RenderOptions(stream="stderr").keep(records) == []


def test_the_terminal_logger_marks_every_file_it_writes(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    logger = TerminalLogger(log, LogRotation(max_size=4096, max_files=100))
    written = FORGED * 200  # 5 files
    logger.write(written)
    assert logger.close() == 0
    files = [*rotated_logs(log), log]
    assert len(files) >= 4
    assert all(_marked(path) for path in files)
    assert _text(LogFollower(log).tail(None)) == written
    assert RenderOptions(stream="stderr").keep(LogFollower(log).tail(None)) == []
    assert _text(LogFollower(log).tail(2)) == b"".join(FORGED.splitlines(keepends=True)[1:])
    previous = tmp_path / "c.previous.log"
    keep_as_previous(log, previous)  # `--previous`: renamed, still marked
    assert all(_marked(path) for path in [*rotated_logs(previous), previous])
    assert _text(LogFollower(previous).tail(None)) == written


def test_since_goes_by_when_a_terminal_log_was_last_written(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    create_log_file(log, terminal=True)
    log.write_bytes(FORGED)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    os.utime(log, (hour_ago.timestamp(), hour_ago.timestamp()))
    follower = LogFollower(log)
    assert follower.tail(None, hour_ago + timedelta(minutes=1)) == []
    with log.open("ab") as more:
        more.write(b"now\r\n")
    assert _text(follower.read()) == b"now\r\n"  # following goes on from the end
    assert _text(LogFollower(log).tail(None, hour_ago)) == FORGED + b"now\r\n"


def test_create_log_file_sets_or_takes_off_the_mark(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "c.log"
    create_log_file(log, terminal=True)
    assert stat.S_IMODE(log.stat().st_mode) == 0o640 | TERMINAL_LOG_MARK
    create_log_file(log)  # the next instance has no terminal: its records' file
    assert stat.S_IMODE(log.stat().st_mode) == 0o640


def _records_logger(log: Path, data: bytes) -> None:
    """The records' logger, as the shim runs it, logging ``data`` from stdout."""
    out_r, out_w = os.pipe()
    process = subprocess.Popen(
        logger_command(log, streams={out_r: "stdout"}, ready_fd=None), pass_fds=(out_r,)
    )
    os.close(out_r)
    os.write(out_w, data)
    os.close(out_w)
    assert process.wait(timeout=30) == 0


def test_a_records_logger_takes_the_mark_off_a_file_it_appends_to(tmp_path: Path) -> None:
    """An empty log an instance with a terminal left (kept, having written nothing) gets the
    next instance's records: marked, its records would be shown as raw lines."""
    log = tmp_path / "c.log"
    create_log_file(log, terminal=True)
    _records_logger(log, b"2020-01-01T00:00:00Z stderr P x\n")
    assert not _marked(log)
    [record] = LogFollower(log).tail(None)
    assert (record.stream, record.text) == ("stdout", b"2020-01-01T00:00:00Z stderr P x")
    assert record.time is not None
    assert record.time.startswith(str(datetime.now(UTC).year))


def test_a_terminal_logger_marks_a_file_an_older_kukeon_left_unmarked(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"older\r\n")
    log.chmod(0o640)
    logger = TerminalLogger(log, LogRotation())
    logger.write(FORGED)
    assert logger.close() == 0
    assert _marked(log)
    assert _text(LogFollower(log).tail(None)) == b"older\r\n" + FORGED


def test_a_status_message_takes_a_terminal_line_as_written(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    create_log_file(log, terminal=True)
    log.write_bytes(b"2020-01-01T00:00:00Z stderr F not a record\r\n")
    assert last_logged_line(log) == "2020-01-01T00:00:00Z stderr F not a record"
    log.chmod(0o640)  # a file of records: the record's text
    assert last_logged_line(log) == "not a record"
