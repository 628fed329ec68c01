"""Read, change, write again on a 409 Conflict: the attempts a read-modify-write gets.

A client that updates what it read sends the read's resourceVersion, so a write made in
between (kukeond's status writes move an object's resourceVersion too) is a Conflict,
never overwritten. The answer is to read again and redo the change. Tried at once, a busy
object (a crash-looping cell, a set being rolled) can take the next write too: the
attempts are spaced, as client-go's ``retry.RetryOnConflict`` spaces them (10 ms, doubling,
with jitter), and give up after ``CONFLICT_ATTEMPTS``, each caller saying what kept changing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from kukeon.client.errors import ApiRequestError
from kukeon.retrying import Backoff

CONFLICT = 409
CONFLICT_ATTEMPTS = 6
"""client-go's ``DefaultRetry`` makes 5 steps; one more for the first try."""
FIRST_DELAY_SECONDS = 0.01
LONGEST_DELAY_SECONDS = 0.5


def is_conflict(error: ApiRequestError) -> bool:
    """A write refused because the object changed since it was read (not AlreadyExists)."""
    return error.code == CONFLICT and error.reason == "Conflict"


async def conflict_attempts(attempts: int = CONFLICT_ATTEMPTS) -> AsyncIterator[int]:
    """Yield the attempt numbers, sleeping a growing, jittered delay before each but the
    first: ``async for _ in conflict_attempts(): read; change; write; on Conflict continue``."""
    backoff = Backoff(FIRST_DELAY_SECONDS, LONGEST_DELAY_SECONDS, jitter=0.5)
    for attempt in range(attempts):
        if attempt:
            await backoff.sleep()
        yield attempt
