"""When a followed log (``logs -f``) ends: once its cell is gone, or once its cell's run is
over, no container of it running or to run again without a user's word.

kubectl's ``logs -f`` ends when the container does; a followed log here goes on across a
container's restarts (its restart policy brings it back), but a cell that ``Exited`` (every
container ended, none owed a restart), ended in ``Error`` (one failed for good) with nothing
left running, or was stopped (``desiredState: Stopped``) has no more lines coming: its
follow waited for ever (``kukectl logs -f`` of a finished job hung until the cell was
deleted). A cell that ``Failed`` to be built is retried, so its follow still waits for the
first line.
"""

from __future__ import annotations

import enum

from kukeon.api import Cell, Kind
from kukeon.api.states import CellState, ContainerState
from kukeon.store import NotFound, Registry

_OVER_STATES = frozenset({CellState.EXITED, CellState.ERROR, CellState.STOPPED})
_ENDED = frozenset({ContainerState.STOPPED, ContainerState.FAILED})


class FollowEnd(enum.Enum):
    """Why a followed log ends: its cell is gone, or the cell's run is over."""

    GONE = "gone"
    OVER = "over"


def run_is_over(cell: Cell) -> bool:
    """No container of ``cell`` runs or is to run again without a user's word."""
    status = cell.status
    return status.state in _OVER_STATES and all(c.state in _ENDED for c in status.containers)


async def follow_end(registry: Registry, key: tuple[str, ...]) -> FollowEnd | None:
    """Whether the log of the cell at ``key`` has no more lines coming, and why."""
    try:
        cell = await registry.get(Kind.CELL, key)
    except NotFound:
        return FollowEnd.GONE
    return FollowEnd.OVER if isinstance(cell, Cell) and run_is_over(cell) else None
