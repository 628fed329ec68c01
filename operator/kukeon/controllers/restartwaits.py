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

The run after a restart is counted too: a run of ``CRASH_LOOP_RESET`` ends a crash loop
(the next restart at once, the back-off from its start), and measured as the exit's time
minus the start's, a step forward during a short run made it that long (every looping
container restarted at once, its back-off forgotten). ``ran`` gives the shorter of that
and the time since this process made the restart, or the latter when the wall clock's
reading is none (a step back: the start as recorded follows the exit, ``started_by``
makes the run last no time).

Kept per container, for its last exit only (a new exit, or another pause, starts another
wait); a wait ended ``KEEP_SECONDS`` ago is dropped when another one starts (its container
restarted since, or deleted: nothing of the cell controller's finalization is needed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .cellstate import CRASH_LOOP_RESET

KEEP_SECONDS = CRASH_LOOP_RESET.total_seconds() + 60.0
"""How long a wait is kept after its end: its restart is made by the pass its wake-up
brings, and the run after it is counted while it can still end a crash loop."""
AGREE_SECONDS = 1.0
"""Within this, the wall clock's due time stands (readings a moment apart, containerd's
clock and kukeond's): the status is written again only after a step."""

Which = tuple[Hashable, str]
"""(cell key, container id)."""


@dataclass(slots=True)
class _Counted:
    wait: Hashable
    deadline: float
    restarted: float | None = None
    """When (monotonic) the last pass that found the wait over saw it so: the restart."""


class RestartWaits:
    """The waits planned by this process, and when it made their restarts."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._counted: dict[Which, _Counted] = {}

    def of(self, cell: Hashable, container: str) -> RestartWait:
        """One container's counts (``ContainerInputs.restart_wait``)."""
        return RestartWait(self, (cell, container))

    def left(self, which: Which, wait: Hashable, wall_left: float) -> float:
        """Seconds the restart after ``wait`` still waits (``wall_left``: the wall clock's
        reading, taken the first time the wait is seen)."""
        now = self._monotonic()
        counted = self._counted.get(which)
        if counted is None or counted.wait != wait:
            self._counted = {
                w: c for w, c in self._counted.items() if c.deadline > now - KEEP_SECONDS
            }
            counted = self._counted[which] = _Counted(wait, now + wall_left)
        left = counted.deadline - now
        if left <= 0:
            counted.restarted = now  # this pass restarts it
        return left

    def ran(self, which: Which, wall_ran: float) -> float:
        """How long the run that just ended lasted: ``wall_ran`` (its exit's time minus its
        start's), or what this process counted since it restarted the container when that
        is shorter, or when the wall clock's reading is none (a step back)."""
        counted = self._counted.get(which)
        if counted is None or counted.restarted is None:
            return wall_ran
        since = self._monotonic() - counted.restarted
        return since if wall_ran <= 0 else min(since, wall_ran)

    def __len__(self) -> int:
        """How many waits are kept."""
        return len(self._counted)


@dataclass(frozen=True, slots=True)
class RestartWait:
    """One container's counts."""

    waits: RestartWaits
    which: Which

    def left(self, wait: Hashable, wall_left: float) -> float:
        return self.waits.left(self.which, wait, wall_left)

    def ran(self, wall_ran: float) -> float:
        return self.waits.ran(self.which, wall_ran)


def counted_due(
    wait: RestartWait | None, which: Hashable, due: datetime, now: datetime
) -> datetime:
    """``due`` (the wall clock's), or now plus what this process's count leaves of the wait
    ``which`` when the two differ by more than ``AGREE_SECONDS`` (the wall clock stepped)."""
    if wait is None:
        return due
    wall_left = (due - now).total_seconds()
    left = wait.left(which, wall_left)
    return due if abs(left - wall_left) <= AGREE_SECONDS else now + timedelta(seconds=left)


def counted_start(
    wait: RestartWait | None, started: datetime | None, finished: datetime
) -> datetime | None:
    """The start of the run that ended at ``finished`` as far back as ``RestartWait.ran``
    counts it (``started`` itself without a count, or when they agree within a second)."""
    if wait is None or started is None:
        return started
    wall_ran = (finished - started).total_seconds()
    ran = wait.ran(wall_ran)
    return started if abs(ran - wall_ran) <= AGREE_SECONDS else finished - timedelta(seconds=ran)


__all__ = [
    "AGREE_SECONDS",
    "KEEP_SECONDS",
    "RestartWait",
    "RestartWaits",
    "counted_due",
    "counted_start",
]
