"""Waking the cells a realm's limits held back, once the realm's cgroup has new limits.

A container that cannot start because a limit above it is full fails its cell
`PidsLimitReached` (``cellpids``) or `OOMKilled` (runc's init killed under its own or its
realm's memory limit), retried after the queue's back-off, which grows to minutes. What
usually ends it is an admin raising the realm's `spec.limits`: once this node's realm
controller has written the new limits to the realm's cgroup, it requeues this node's
cells of the realm held so (`Operator.trigger`), as an imported image wakes the cells
waiting for it (``imagewaits``). Woken before the cgroup changed, a cell would only fail
again, its back-off longer.
"""

from __future__ import annotations

import logging

from kukeon.api import Cell, Kind, key_of
from kukeon.framework.cache import WatchedObjects

from .membership import Trigger

log = logging.getLogger(__name__)

HELD_BY_LIMITS = frozenset({"PidsLimitReached", "OOMKilled"})
"""The reasons a cell or one of its containers gives when a limit held it back."""


def held_by_limits(cell: Cell) -> bool:
    """Whether the cell, or one of its containers, last said a limit held it back."""
    if cell.status.reason in HELD_BY_LIMITS:
        return True
    return any(status.reason in HELD_BY_LIMITS for status in cell.status.containers)


def wake_held_cells(
    cache: WatchedObjects | None, trigger: Trigger | None, *, realm: str, node: str
) -> int:
    """Requeue ``node``'s cells of ``realm`` that a limit held back; how many."""
    if trigger is None or cache is None or not cache.covers(Kind.CELL):
        return 0
    woken = 0
    for cell in cache.list(Kind.CELL, scope=(realm,)):
        if isinstance(cell, Cell) and cell.spec.node_name == node and held_by_limits(cell):
            trigger(Kind.CELL, key_of(cell))
            woken += 1
    if woken:
        log.info("realm %s: new limits; %d cell(s) they held back tried again", realm, woken)
    return woken


__all__ = ["HELD_BY_LIMITS", "held_by_limits", "wake_held_cells"]
