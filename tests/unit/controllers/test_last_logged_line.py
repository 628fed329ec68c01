"""The last line of a container's log, for the status of a failed exit."""

from __future__ import annotations

from pathlib import Path

from kukeon.controllers.cellfiles import LAST_LINE_MAX, last_logged_line


def _log(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "app.log"
    path.write_bytes(content)
    return path


def test_the_last_cri_record_with_text(tmp_path: Path) -> None:
    content = (
        b"2026-12-04T10:00:00.000000001Z stdout F starting\n"
        b"2026-12-04T10:00:01.000000001Z stderr F fatal: no config at /etc/app.conf\n"
        b"2026-12-04T10:00:01.000000002Z stdout F \n"
    )
    assert last_logged_line(_log(tmp_path, content)) == "fatal: no config at /etc/app.conf"


def test_a_terminals_raw_output_without_its_control_characters(tmp_path: Path) -> None:
    content = b"$ run\r\n\x1b[31mpanic: boom\x1b[0m\r\n"
    assert last_logged_line(_log(tmp_path, content)) == "[31mpanic: boom[0m"


def test_a_long_line_is_cut_and_a_long_log_read_from_its_end(tmp_path: Path) -> None:
    content = b"x" * 100_000 + b"\n" + b"2026-12-04T10:00:00Z stderr F " + b"y" * 5000 + b"\n"
    assert last_logged_line(_log(tmp_path, content)) == "y" * LAST_LINE_MAX
    # A line cut by where the read starts is not taken for a whole one.
    assert last_logged_line(_log(tmp_path, b"z" * 20_000 + b"\n\n")) is None


def test_no_log_or_an_empty_one_says_nothing(tmp_path: Path) -> None:
    assert last_logged_line(tmp_path / "missing.log") is None
    assert last_logged_line(_log(tmp_path, b"")) is None
    assert last_logged_line(_log(tmp_path, b"\xff\xfe\n")) == "\ufffd\ufffd"
