"""How long each Ready cell of a set has been so, for its ``minReadySeconds``: counted on
the leader's monotonic clock (``stopwatch``), not as now minus the cell's ``readyAt``.

``readyAt`` is a wall-clock time written by the cell's node. Measured on the wall clock, a
step of the leader's clock (NTP, a resumed VM) decided availability: forward, every cell
Ready a moment ago was available at once (a rollout deleted old cells without waiting
``minReadySeconds`` for the new ones); back, no cell made Ready before the step was
available for as long as the step (a rollout held, ``availableReplicas`` 0 meanwhile).

The wall clock is read once per Ready episode, when this leader first sees the cell Ready:
its age then, kept within 0..``minReadySeconds``, is credited, so a restarted kukeond or a
new leader does not count every cell unavailable again for ``minReadySeconds`` (what a set
showed available stays so); from then on only the monotonic clock counts. A step between
the node writing ``readyAt`` and this leader's first look moves that one reading only, and
by ``minReadySeconds`` at most.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Generic, TypeVar

from .cellsetplan import Member
from .stopwatch import Stopwatches

K = TypeVar("K", bound=Hashable)


class ReadyClocks(Generic[K]):
    """One ``Stopwatches`` per set: each Ready cell's seconds Ready, by name."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._sets: dict[K, Stopwatches[str]] = {}

    def counted(
        self, key: K, members: Sequence[Member], min_ready_seconds: int, now: datetime
    ) -> list[Member]:
        """``members`` of the set ``key``, each Ready one with ``ready_for`` set."""
        watches = self._sets.setdefault(key, Stopwatches(self._monotonic))
        counted: list[Member] = []
        for member in members:
            if member.ready:
                since = member.ready_since
                age = 0.0 if since is None else (now - since).total_seconds()
                credit = min(max(age, 0.0), float(min_ready_seconds))
                seconds = watches.elapsed(member.name, since, credit=credit)
                member = replace(member, ready_for=seconds)
            counted.append(member)
        watches.retain({m.name for m in members if m.ready})
        return counted

    def restart(self) -> None:
        """A new term: each cell's count starts again from its (bounded) wall-clock age."""
        self._sets.clear()

    def retain(self, keys: Collection[K]) -> None:
        """Forget every set but ``keys`` (the sets stored now)."""
        self._sets = {key: watches for key, watches in self._sets.items() if key in keys}


__all__ = ["ReadyClocks"]
