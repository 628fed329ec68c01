"""Text a realm's user wrote reaches an admin's terminal escaped in human output."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli.output import describe, render
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
