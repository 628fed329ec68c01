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

It is kept by the leader in memory, one per set: a new leader (or a restarted kukeond)
starts each set's backoff afresh, at worst making one replacement at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .cellsetplan import Member

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
    failures: int = 0
    last_failure: datetime | None = None
    not_before: datetime | None = None

    def failed(self, count: int, now: datetime) -> None:
        """``count`` cells ended after they were Ready and are being replaced now."""
        if count <= 0:
            return
        first = self.failures == 0
        self.failures += count
        self.last_failure = now
        if first and count == 1:
            self.not_before = None  # the first replacement is made at once
            return
        delay = min(self.policy.initial * 2 ** (self.failures - 2), self.policy.cap)
        self.not_before = now + timedelta(seconds=delay)

    def holding(self, now: datetime) -> float:
        """Seconds creations still wait (0: none)."""
        if self.not_before is None:
            return 0.0
        return max(0.0, (self.not_before - now).total_seconds())

    def settle(self, members: Sequence[Member], min_ready_seconds: int, now: datetime) -> None:
        """Reset once a cell made since the last failure has stayed Ready long enough."""
        if self.last_failure is None:
            return
        enough = timedelta(seconds=max(min_ready_seconds, self.policy.reset_after))
        for member in members:
            since = member.ready_since
            if (
                member.ready
                and not member.failed
                and member.created >= self.last_failure
                and since is not None
                and now - since >= enough
            ):
                self.failures, self.last_failure, self.not_before = 0, None, None
                return
