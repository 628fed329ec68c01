"""How loudly a controller says that etcd, or the host's disk, refused it: once when it
starts, then a line a minute.

A full etcd (``SpaceExceeded``) or an unreachable one (``Unavailable``) refuses every
object's pass at once, each retried with its back-off: logged per pass, with a traceback as
an unexpected error, that was a warning and a traceback per object every few seconds for as
long as etcd stayed full, burying the one line that says why. It is one condition of the
process, not of an object, so it is said as such: at warning level when it starts (or its
reason changes), at debug level while it goes on, and at warning level again at most once
every ``every`` seconds with the count of the passes refused in between, as the task
supervisor says a repeated crash once and then counts it. A pass that succeeds in between
does not start it over (with etcd full, the passes that write nothing still succeed).

A full (or read-only) host disk is the same kind of condition: every pass that writes a
file there (a network attachment, a lease, a log) is refused until room is freed, and was
said at warning level at each retry of each object. The processor keeps one
``ConditionLog`` for etcd's refusals and one for the disk's, so the two (often met
together: an embedded etcd lives on that disk) never take each other's turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kukeon.store import OutcomeUnknown, SpaceExceeded, Unavailable

ETCD_FULL = "EtcdFull"
ETCD_UNAVAILABLE = "EtcdUnavailable"


def trouble_reason(error: Unavailable) -> str:
    """The status and log reason of etcd's refusal."""
    return ETCD_FULL if isinstance(error, SpaceExceeded) else ETCD_UNAVAILABLE


def status_writable(error: Unavailable) -> bool:
    """Whether a status write may get through after ``error``: not while etcd is full or
    out of reach (that write would be refused too, after its own retries); after a write
    that failed in flight (``OutcomeUnknown``) etcd may well answer."""
    return isinstance(error, OutcomeUnknown)


class ConditionLog:
    """The level of each refusal's log line, for one condition of one process's
    controllers (etcd refusing, or the host's disk refusing)."""

    def __init__(self, *, every: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._every = every
        self._clock = clock
        self._reason: str | None = None
        self._said_at = 0.0
        self._unsaid = 0

    def level(self, reason: str) -> tuple[int, int]:
        """The level of a refusal's line and how many refusals went unsaid before it."""
        now = self._clock()
        if reason == self._reason and now - self._said_at < self._every:
            self._unsaid += 1
            return logging.DEBUG, 0
        unsaid, self._unsaid = self._unsaid, 0
        self._reason, self._said_at = reason, now
        return logging.WARNING, unsaid
