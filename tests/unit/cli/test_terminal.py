"""Text a realm's user wrote reaches an admin's terminal escaped in human output."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli.output import describe, render
from kukeon.cli.runner import error_line, warning_line
from kukeon.cli.terminal import terminal_safe

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
# OSC 52 writes the reader's clipboard on many terminals; CSI 2J clears the screen.
CLIPBOARD = "\x1b]52;c;aWQK\x07"
CLEAR = "\x1b[2J"


def _hostile_cell() -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {
                "name": "c",
                "creationTimestamp": NOW.isoformat(),
                "labels": {f"k{CLEAR}": f"v{CLIPBOARD}"},
                "annotations": {"note": "line\nfake-cell   Ready"},
            },
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "t",
                "containers": [{"id": "main", "image": "busybox", "args": [CLEAR]}],
            },
            "status": {
                "state": "Failed",
                "reason": "RunContainerError",
                "message": f"exec {CLIPBOARD}: not found\nspoofed line",
                "containers": [{"id": "main", "state": "Stopped", "message": CLEAR}],
            },
        }
    )


def test_a_table_and_a_page_escape_what_a_user_wrote() -> None:
    cell = _hostile_cell()
    table = render(Kind.CELL, [cell], "wide", now=NOW)
    page = describe(cell, now=NOW)
    for shown in (table, page):
        assert "\x1b" not in shown
        assert "\x07" not in shown
    assert "\\x1b]52;c;aWQK\\x07" in page
    assert "spoofed line" in page
    assert "\nspoofed line" not in page  # a newline in a value does not start a line


@given(st.text())
def test_nothing_unsafe_is_left_and_safe_text_is_kept(text: str) -> None:
    shown = terminal_safe(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert not any(c in shown for c in "\u202e\u2066\u200f")
    if text.isprintable():  # the bidi controls are not (category Cf)
        assert shown == text


def test_error_and_warning_lines_escape_what_they_quote(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kukectl cp`'s lines quote what a container sent (tar's stderr, a symbolic link's
    target); printed raw, an OSC 52 there wrote the reader's clipboard."""
    for color in ("", "1"):  # a pipe, and a terminal's colours (click strips only CSI)
        monkeypatch.setenv("FORCE_COLOR", color)
        error_line(f"copying web:/x: tar in the container failed (exit 1): {CLIPBOARD}{CLEAR}")
        warning_line(f"skipping symbolic link d/evil -> /{CLIPBOARD}: it points outside")
        err = capsys.readouterr().err
        assert "\x07" not in err
        assert "\x1b]" not in err
        assert "\x1b[2J" not in err
        assert err.count("\\x1b]52;c;aWQK\\x07") == 2
        assert err.count("\n") == 2  # one line each


def test_a_line_break_kukectl_writes_itself_stays_one(capsys: pytest.CaptureFixture[str]) -> None:
    error_line("first\nsecond\tthird")
    assert capsys.readouterr().err == "error: first\nsecond\\x09third\n"
