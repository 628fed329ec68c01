"""The set controller's backoff on replacing cells that end after they were Ready.

A cell of a set that ends (`Failed`, `Error`, `Exited`) after it was Ready is deleted and
replaced (docs/cellsets.md). A template that crashes some time after its readiness would
make a new cell every few seconds forever; so the replacements of one set back off: the
first is made at once, each further one waits twice as long as the one before, from
``initial`` seconds up to ``cap``. While a set's backoff holds, the set controller makes
no new cell for it (a scale-up or a rollout waits as well); the failed cells are still
deleted at once. The backoff resets once a cell made since the last failure has stayed
Ready for ``minReadySeconds``, and at least ``reset_after`` seconds (so a set with
``minReadySeconds: 0`` whose cells crash right after their readiness still backs off).

Both waits are on the leader's monotonic clock (``stopwatch``): the hold until its due
time, and how long a cell has been Ready, from when this leader first saw it Ready (not
from the cell's ``readyAt``, a wall-clock time written by its node). On the wall clock a
step forward released a hold at once and counted a cell Ready for the step; a step back
held the replacements for as long as the step. A cell "made since the last failure" is one
the set did not have when the failure was seen, not one whose creation time is later.

It is kept by the leader in memory, one per set: a new leader (or a restarted kukeond)
starts each set's backoff afresh, at worst making one replacement at once; a leader
elected again keeps its holds, and counts its cells' readiness afresh (later, never
earlier).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .cellsetplan import Member
from .stopwatch import Stopwatches

INITIAL_SECONDS = 2.0
CAP_SECONDS = 300.0
RESET_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = INITIAL_SECONDS
    cap: float = CAP_SECONDS
    reset_after: float = RESET_AFTER_SECONDS


@dataclass
class ReplaceBackoff:
    """One set's replacements: how many in a row, and until when creations wait."""

    policy: BackoffPolicy = field(default_factory=BackoffPolicy)
    monotonic: Callable[[], float] = time.monotonic
    failures: int = 0
    cells_at_failure: frozenset[str] | None = None
    """The set's cells when the last failure was seen (None: no failure to recover from)."""
    not_before: float | None = None
    """When (``monotonic``) creations may go on."""
    ready: Stopwatches[str] = field(init=False)
    """How long each Ready cell of the set has been so, since this leader first saw it."""

    def __post_init__(self) -> None:
        self.ready = Stopwatches(self.monotonic)

    def restart(self) -> None:
        """A new term: how long the cells have been Ready is counted afresh."""
        self.ready.restart()

    def failed(self, count: int, members: Sequence[Member]) -> None:
        """``count`` cells of ``members`` (the set's cells now) ended after they were Ready
        and are being replaced now."""
        if count <= 0:
            return
        first = self.failures == 0
        self.failures += count
        self.cells_at_failure = frozenset(m.name for m in members)
        if first and count == 1:
            self.not_before = None  # the first replacement is made at once
            return
        delay = min(self.policy.initial * 2 ** (self.failures - 2), self.policy.cap)
        self.not_before = self.monotonic() + delay

    def holding(self) -> float:
        """Seconds creations still wait (0: none)."""
        if self.not_before is None:
            return 0.0
        return max(0.0, self.not_before - self.monotonic())

    def settle(self, members: Sequence[Member], min_ready_seconds: int) -> None:
        """Reset once a cell made since the last failure has stayed Ready long enough
        (called at every pass: how long is counted from the first pass that saw it Ready)."""
        made_before = self.cells_at_failure
        if made_before is None:
            return
        ready_for = self.ready.observe(
            {
                m.name: m.ready_since
                for m in members
                if m.ready and not m.failed and m.name not in made_before
            }
        )
        enough = max(min_ready_seconds, self.policy.reset_after)
        if any(seconds >= enough for seconds in ready_for.values()):
            self.failures, self.cells_at_failure, self.not_before = 0, None, None
            self.ready.restart()
