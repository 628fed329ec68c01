"""When a followed log (``logs -f``) ends: once its cell is gone, or once its cell's run is
over, no container of it running or to run again without a user's word.

kubectl's ``logs -f`` ends when the container does; a followed log here goes on across a
container's restarts (its restart policy brings it back), but a cell that ``Exited`` (every
container ended, none owed a restart), ended in ``Error`` (one failed for good) with nothing
left running, or was stopped (``desiredState: Stopped``) has no more lines coming: its
follow waited for ever (``kukectl logs -f`` of a finished job hung until the cell was
deleted). A cell that ``Failed`` to be built is retried, so its follow still waits for the
first line.

The log of one container of a cell with several ends as that container's does: once it
ended and its restart policy owes it no restart (kubectl's ``logs -f -c X`` ends with X's
stream, and ``--all-containers -f`` ends each stream with its container). It followed an
ended sidecar's log for as long as the cell's other containers ran.
"""

from __future__ import annotations

import enum

from kukeon.api import Cell, Kind
from kukeon.api.states import CellState, ContainerState
from kukeon.controllers.cellexits import EVICTED, failure_code
from kukeon.controllers.cellstate import restart_owed
from kukeon.store import NotFound, Registry

_OVER_STATES = frozenset({CellState.EXITED, CellState.ERROR, CellState.STOPPED})
_ENDED = frozenset({ContainerState.STOPPED, ContainerState.FAILED})


class FollowEnd(enum.Enum):
    """Why a followed log ends: its cell is gone, or the cell's (or its container's) run is
    over."""

    GONE = "gone"
    OVER = "over"


def run_is_over(cell: Cell) -> bool:
    """No container of ``cell`` runs or is to run again without a user's word."""
    status = cell.status
    return status.state in _OVER_STATES and all(c.state in _ENDED for c in status.containers)


def container_run_is_over(cell: Cell, container: str) -> bool:
    """``container`` of ``cell`` ended and is not to run again without a user's word: the
    cell's run is over, or its exit is one its restart policy does not restart (as the
    cell controller decides it, ``cellplan``)."""
    if run_is_over(cell):
        return True
    status = next((c for c in cell.status.containers if c.id == container), None)
    spec = next((c for c in cell.spec.containers if c.id == container), None)
    if status is None or spec is None or status.state not in _ENDED:
        return False
    if status.exit_code is None or status.pid is not None:
        return False  # not an exit the controller recorded (yet)
    return status.reason == EVICTED or not restart_owed(
        policy=str(spec.restart_policy),
        exit_code=failure_code(status.exit_code, status.reason),
        restart_count=status.restart_count,
        max_retries=spec.restart_max_retries,
    )


async def follow_end(registry: Registry, key: tuple[str, ...], container: str) -> FollowEnd | None:
    """Whether the log of ``container`` of the cell at ``key`` has no more lines coming,
    and why."""
    try:
        cell = await registry.get(Kind.CELL, key)
    except NotFound:
        return FollowEnd.GONE
    if isinstance(cell, Cell) and container_run_is_over(cell, container):
        return FollowEnd.OVER
    return None
