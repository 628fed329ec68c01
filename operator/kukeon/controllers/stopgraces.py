"""A cell's stop grace when it is deleted, and a later delete that shortens it.

A delete may give its own grace (kubectl's ``--grace-period``: ``gracePeriodSeconds``,
recorded by the registry as ``metadata.deletionGracePeriodSeconds``); it wins over the
cell's ``terminationGracePeriodSeconds`` for that deletion. A second delete with a shorter
grace must reach a finalize already waiting out a long one: the finalize's stops share one
``StopDeadline``, and this change listener of the cell watch (``Operator.on_change``)
moves it earlier when the cell's new version shortens the grace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kukeon.api import AnyResource, Cell, key_of
from kukeon.runtime.containerd.tasks import StopDeadline

from .cellexec import CellExecutor


def stop_grace(cell: Cell) -> int | None:
    """The grace a stop of ``cell`` gets: its deletion's, else its own; None: kukeond's."""
    deleting = cell.metadata.deletion_grace_period_seconds
    if cell.metadata.deletion_timestamp is not None and deleting is not None:
        return deleting
    return cell.spec.termination_grace_period_seconds


class StopGraces:
    """The deadlines of the finalizes stopping cells now, by cell key."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, ...], StopDeadline] = {}

    @asynccontextmanager
    async def stopping(
        self, key: tuple[str, ...], executor: CellExecutor
    ) -> AsyncIterator[CellExecutor]:
        """``executor`` with one deadline for all of its stops, which a shorter grace
        given meanwhile moves earlier."""
        grace = executor.grace_seconds
        if grace is None:
            grace = executor.host.settings.stop_grace_seconds
        deadline = executor.stop_deadline = self._running[key] = StopDeadline(grace)
        try:
            yield executor
        finally:
            if self._running.get(key) is deadline:
                del self._running[key]

    def changed(self, obj: AnyResource, deleted: bool) -> None:
        if not isinstance(obj, Cell) or deleted:
            return
        deadline = self._running.get(key_of(obj))
        grace = obj.metadata.deletion_grace_period_seconds
        if deadline is not None and grace is not None:
            deadline.lower(grace)
