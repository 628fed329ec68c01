"""kukectl exec -it, attach and run -it put the terminal in raw mode without losing input."""

from __future__ import annotations

import os
import select
import termios

from kukeon.cli.sessions import raw_terminal


def test_what_was_typed_before_raw_mode_is_still_read() -> None:
    """A line typed while the session opened (`kukectl run -it` making the cell) stays in
    the terminal's input: tty.setraw's default TCSAFLUSH discarded it, so the shell never
    got it; docker's raw mode keeps it."""
    leader, follower = os.openpty()
    try:
        os.write(leader, b"echo early\n")
        # The terminal takes the line in asynchronously: wait until it is a line to read.
        assert select.select([follower], [], [], 5)[0] == [follower]
        before = termios.tcgetattr(follower)
        restore = raw_terminal(follower)
        raw = termios.tcgetattr(follower)
        assert not raw[3] & (termios.ICANON | termios.ECHO)  # lflag: raw
        assert select.select([follower], [], [], 1)[0] == [follower], "the line was dropped"
        assert os.read(follower, 100) == b"echo early\n"
        os.write(leader, b"x")
        assert os.read(follower, 100) == b"x"  # raw: a key without its line
        restore()
        assert termios.tcgetattr(follower) == before
    finally:
        os.close(leader)
        os.close(follower)
