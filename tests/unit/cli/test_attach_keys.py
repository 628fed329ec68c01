"""kukectl attach's detach sequence (Ctrl-] Ctrl-]) found in typed input."""

from __future__ import annotations

from kukeon.cli.sessions import _DetachScanner


def test_two_ctrl_brackets_detach_and_nothing_after_is_sent() -> None:
    scanner = _DetachScanner()
    assert scanner.feed(b"ls\r\x1d\x1dexit\r") == (b"ls\r", True)


def test_the_sequence_may_span_reads() -> None:
    scanner = _DetachScanner()
    assert scanner.feed(b"a\x1d") == (b"a", False)
    assert scanner.feed(b"\x1d") == (b"", True)


def test_a_lone_ctrl_bracket_is_sent_on_with_what_follows() -> None:
    scanner = _DetachScanner()
    assert scanner.feed(b"\x1d") == (b"", False)
    assert scanner.feed(b"x\x1d") == (b"\x1dx", False)
    assert scanner.feed(b"y") == (b"\x1dy", False)
