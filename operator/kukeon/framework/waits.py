"""Bounded waits that never lose a cancellation.

``asyncio.wait_for`` on Python 3.11 swallows a cancellation that arrives just as the
awaited thing finishes: it returns the result instead of raising. A loop around it then
never ends, and whoever cancelled the task and awaits it waits forever (kukeond once hung
at shutdown). Python 3.12 fixed it by building ``wait_for`` on ``asyncio.timeout``, which
tells its own expiry from the caller's cancellation on 3.11 already; these helpers use it.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` passed; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
