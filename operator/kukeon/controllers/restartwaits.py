"""A container's restart back-off as this process counts it: on its monotonic clock, from
the first pass that planned the wait.

The restart's due time is status: the exit's time plus the pause, on the wall clock, so a
kukeond restarted meanwhile decides the same wait. Read against the wall clock alone, a step
of it forward (NTP, a resumed VM) made every back-off under way due at once: each
crash-looping container of the node restarted at the step, its pause skipped (a step back is
``cellplan._due``'s slack). So the wait the first pass planned for an exit is also kept here,
as a deadline on the monotonic clock, and a later pass restarts no earlier than it, whatever
the wall clock says; after a step the due time reported is moved to match. A kukeond
restarted meanwhile knows none of them: it goes by the status, as before.

Kept per container, for its last exit only (a new exit, or another pause, starts another
wait); a wait ended ``KEEP_SECONDS`` ago is dropped when another one starts (its container
restarted since, or deleted: nothing of the cell controller's finalization is needed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from functools import partial

from kukeon.api.container import RESTART_BACKOFF_MAX

RestartWait = Callable[[Hashable, float], float]
"""Seconds a restart still waits, given its wait (the exit and its pause) and what the wall
clock says is left: what is left of this process's count of it."""

KEEP_SECONDS = float(RESTART_BACKOFF_MAX)
"""How long a wait is kept after its end: a pass comes well within it (a restart due is
made by the pass its wake-up brings)."""
AGREE_SECONDS = 1.0
"""Within this, the wall clock's due time stands (readings a moment apart, containerd's
clock and kukeond's): the status is written again only after a step."""


class RestartWaits:
    """The waits planned by this process: (cell key, container id) -> (wait, deadline)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._deadlines: dict[tuple[Hashable, str], tuple[Hashable, float]] = {}

    def of(self, cell: Hashable, container: str) -> RestartWait:
        """The count of one container's restarts (``ContainerInputs.restart_wait``)."""
        return partial(self.left, (cell, container))

    def left(self, which: tuple[Hashable, str], wait: Hashable, wall_left: float) -> float:
        now = self._monotonic()
        counted = self._deadlines.get(which)
        if counted is None or counted[0] != wait:
            self._deadlines = {
                w: d for w, d in self._deadlines.items() if d[1] > now - KEEP_SECONDS
            }
            counted = self._deadlines[which] = (wait, now + wall_left)
        return counted[1] - now

    def __len__(self) -> int:
        """How many waits are kept."""
        return len(self._deadlines)


def counted_due(
    wait: RestartWait | None, which: Hashable, due: datetime, now: datetime
) -> datetime:
    """``due`` (the wall clock's), or now plus what this process's count leaves of the wait
    ``which`` when the two differ by more than ``AGREE_SECONDS`` (the wall clock stepped)."""
    if wait is None:
        return due
    wall_left = (due - now).total_seconds()
    left = wait(which, wall_left)
    return due if abs(left - wall_left) <= AGREE_SECONDS else now + timedelta(seconds=left)


__all__ = ["AGREE_SECONDS", "KEEP_SECONDS", "RestartWait", "RestartWaits", "counted_due"]
