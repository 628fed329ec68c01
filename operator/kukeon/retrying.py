"""The delay of a long-lived retry loop, for every layer: exponential, capped, reset by success.

Used by the loops that reconnect for ever (a registry watch, the metrics informer, lease
sessions, containerd calls and its event stream), so they all back off the same way.
The work queues' per-object retries use ``kukeon.framework.backoff`` (a pure function of
the attempt number, with the operator's settings).

Why not a retry library (tenacity, backoff): each of those loops does work between
attempts that a decorator would hide (resume a watch at a revision, re-dial a channel
every few failures, check a deadline before sleeping, log the coming delay); the schedule
itself is a few lines. ``FailureRun`` is what such a loop says: the first failure and the
end of a run, each attempt between at debug.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable


class Backoff:
    """One retry loop's delay: ``initial``, multiplied after each failure up to ``maximum``.

    ``next()`` gives the delay to wait now and grows the next one; ``reset()`` after a
    success starts over. With ``jitter`` j, each wait is scaled by a random factor in
    [1 - j, 1], so loops that failed together do not retry in lockstep.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if initial <= 0 or maximum <= 0 or factor < 1 or not 0 <= jitter < 1:
            raise ValueError(
                "Backoff needs initial > 0, maximum > 0, factor >= 1 and 0 <= jitter < 1"
            )
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._uniform = uniform
        self.current = initial

    def reset(self) -> None:
        self.current = self.initial

    def next(self) -> float:
        """The delay to wait now (the next one grows)."""
        delay = self.current
        if self.jitter:
            delay *= self._uniform(1.0 - self.jitter, 1.0)
        self.current = min(self.current * self.factor, self.maximum)
        return delay

    async def sleep(self) -> None:
        await asyncio.sleep(self.next())


class FailureRun:
    """What a retry loop says of a run of failures: the first at ``level``, the end once
    (how long and how many attempts), every failure between at debug only. A loop retrying
    etcd every 50 ms to 1 s while it refuses connections is two lines, not one per attempt.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.INFO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._level = level
        self._clock = clock
        self._since: float | None = None
        self._attempts = 0

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, message: str, *args: object) -> None:
        """One failure: ``message % args``, at ``level`` when it begins a run, else debug."""
        self._attempts += 1
        if self._since is not None:
            self._log.debug("%s: " + message + " (attempt %d)", self._what, *args, self._attempts)
            return
        self._since = self._clock()
        self._log.log(
            self._level,
            "%s: " + message + "; retrying (each failure until it works at debug)",
            self._what,
            *args,
        )

    def ended(self) -> None:
        """It worked: said once when a run of failures was going on."""
        if self._since is None:
            return
        self._log.log(
            self._level,
            "%s works again after %.1fs (%d failed attempts)",
            self._what,
            self._clock() - self._since,
            self._attempts,
        )
        self._since, self._attempts = None, 0
