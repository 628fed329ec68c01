"""Ending child tasks without losing our own cancellation, for every layer.

``task.cancel()`` then ``with suppress(CancelledError): await task`` swallows a
cancellation of the *caller* that arrives during that await, not only the child's: the
caller then runs on as if nothing happened. An election campaigned and led again after
its ``run`` was cancelled, and whoever cancelled it waited forever; an ``asyncio.timeout``
around such a caller never fires, as it counts on the CancelledError coming through.
Here the children are always waited for, and a cancellation of ours is raised again
once they have ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def wait_ended(*tasks: asyncio.Future[Any]) -> None:
    """Wait until each of ``tasks`` is done (they are not cancelled here), then raise a
    cancellation of ours that came meanwhile. What a child raised is retrieved and not
    ours to report (its owner logs what matters), so it is logged at debug level only."""
    cancelled = False
    pending = {task for task in tasks if not task.done()}
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True  # ours: the children first, then we end
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.debug("%r ended with %r after it was cancelled", task, error)
    if cancelled:
        raise asyncio.CancelledError


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until each is done, without losing our own cancellation."""
    for task in tasks:
        task.cancel()
    await wait_ended(*tasks)
