"""How long something has been in one state, as this process measures it: on its monotonic
clock, from when it first saw it so.

A leader deciding by a duration (a node lost for ``node_lost_timeout``, a rollout without
progress for its deadline, a set's cell Ready long enough to end its replacement back-off)
measured it as now minus a time in a status, on the wall clock. A step of that clock (NTP,
a resumed VM) broke every such measure: forward, a duration of seconds looked like hours
and the decision came at once; back, it held for as long as the step. What a status time
says is kept for display; how long is counted here instead, on ``time.monotonic``, which
no clock step moves, from the first time this process saw the thing in its current
*episode* (a value that changes when the state starts over: the Ready condition's
transition time, the time a set last progressed).

The semantics every user shares: a count lives in memory only, so a new leader (a
failover, a restarted kukeond, a leader elected again) starts it afresh with
``restart()``: the decision comes later after a failover, never earlier. A key left out of
``observe`` (a node Ready again) or forgotten starts from zero when seen again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Stopwatches(Generic[K]):
    """Seconds each key has been in its current episode since this process first saw it."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        """The clock every count is read on (a test's, or ``time.monotonic``)."""
        self._first_seen: dict[K, tuple[Hashable, float]] = {}
        """Each key's episode and when it was first seen in it."""

    def restart(self) -> None:
        """Forget every count: a leader that has just (re)taken its lease saw none of it."""
        self._first_seen.clear()

    def elapsed(self, key: K, episode: Hashable, *, credit: float = 0.0) -> float:
        """Seconds ``key`` has been in ``episode``: ``credit`` the first time it is seen in
        it (a new key, or another episode than the one counted), 0 unless the caller gives
        a bounded reading of what came before (a wall-clock age, capped)."""
        now = self.monotonic()
        first = self._first_seen.get(key)
        if first is None or first[0] != episode:
            first = self._first_seen[key] = (episode, now - max(0.0, credit))
        return max(0.0, now - first[1])

    def forget(self, key: K) -> None:
        self._first_seen.pop(key, None)

    def retain(self, keys: Collection[K]) -> None:
        """Forget every key but ``keys``."""
        self._first_seen = {k: v for k, v in self._first_seen.items() if k in keys}

    def observe(self, episodes: Mapping[K, Hashable]) -> dict[K, float]:
        """The seconds of each key of ``episodes`` (all that are in the state now); every
        other key is forgotten."""
        lost = {key: self.elapsed(key, episode) for key, episode in episodes.items()}
        self.retain(episodes.keys())
        return lost


__all__ = ["Stopwatches"]
