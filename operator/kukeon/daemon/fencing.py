"""When a node fences itself: the rule the node agent's fencing watch follows.

A node that etcd has not confirmed its heartbeat lease to for ``fenceAfterSeconds`` stops
its scheduler-placed cells by itself (docs/fleet.md), before the scheduler may place them
elsewhere (``nodeLeaseTtl + nodeLostTimeout``); a renewal unfences it. The seconds are
counted from the last confirmation of any of its leases: a lost lease is replaced by a new
one only once etcd answers, and until then the lost one's last confirmation still counts.
"""

from __future__ import annotations

from enum import StrEnum

FENCE_CHECKS_PER_PERIOD = 10
"""The fencing watch looks this many times per ``fenceAfterSeconds`` (at most once a second)."""


class FenceStep(StrEnum):
    FENCE = "fence"
    UNFENCE = "unfence"


def fence_step(*, silent_for: float, fence_after: float, fenced: bool) -> FenceStep | None:
    """What the fencing watch does, ``silent_for`` seconds after the last renewal."""
    if not fenced and silent_for >= fence_after:
        return FenceStep.FENCE
    if fenced and silent_for < fence_after:
        return FenceStep.UNFENCE
    return None
