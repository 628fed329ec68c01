"""How long each node has been NotReady, as a leader measures it: on its monotonic clock.

The scheduler moves a lost node's cells after ``node_lost_timeout`` and the set controller
after a set's ``lostNode.replaceAfterSeconds``. Measured on the wall clock (now minus the
Ready condition's ``lastTransitionTime``), a forward step of the leader's clock (NTP, a
VM resumed) made a node that was NotReady for seconds look lost for hours, and its cells
were moved at once. A leader therefore counts from the moment it first saw the node
NotReady (``stopwatch.Stopwatches``, whose semantics these are): a new leader (or one
leading again) starts counting afresh, so after a failover a lost node's cells wait the
whole timeout again: later, never earlier. A node that is Ready in between, or whose Ready
condition changed since (NotReady again, a new episode), starts a new count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

from kukeon.api import Node

from .stopwatch import Stopwatches


def ready_since(node: Node) -> datetime | None:
    """When the node's Ready condition last changed (shown, and what tells one NotReady
    episode from the next; not a measure of how long it lasted)."""
    for condition in node.status.conditions:
        if condition.type == "Ready":
            return condition.last_transition_time
    return None


class LostTimer:
    """Seconds each NotReady node has been so since this leader first saw it NotReady."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._watches: Stopwatches[str] = Stopwatches(monotonic)

    def restart(self) -> None:
        """Forget every count: a leader that has just (re)taken its lease saw none of it."""
        self._watches.restart()

    def observe(self, not_ready: Iterable[Node]) -> dict[str, float]:
        """The seconds each node of ``not_ready`` (a pass's every node that is not Ready)
        has been lost. The nodes left out are forgotten: one seen Ready starts from zero
        when it is lost again."""
        return self._watches.observe({node.metadata.name: ready_since(node) for node in not_ready})


__all__ = ["LostTimer", "ready_since"]
