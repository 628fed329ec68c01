"""A terminal's size as a client sends it in an exec or attach session's resize frames."""

from __future__ import annotations

import json
from typing import Final

TERMINAL_MAX: Final = 10_000
"""The largest width or height of a session's terminal, from a query or a resize frame."""


def resize_of(payload: bytes) -> tuple[int, int] | None:
    """A resize frame's ``{"width": W, "height": H}`` (whole numbers, 1..TERMINAL_MAX, as
    the query's), or None: a frame that is not one is ignored. It is the client's to send, so
    nothing in it may end the session (``1e309`` is an infinity ``int`` refuses with
    OverflowError; deep nesting is json's RecursionError)."""
    try:
        size = json.loads(payload)
        width, height = size["width"], size["height"]
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        return None
    if all(
        isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= TERMINAL_MAX
        for value in (width, height)
    ):
        return width, height
    return None
