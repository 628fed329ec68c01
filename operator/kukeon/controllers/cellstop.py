"""The cell controller's ``desiredState: Stopped`` pass as plain data, beside `cellplan`.

`plan_stop` gives the Events of a stop and `stopped_statuses` the containers' statuses
once their tasks are stopped. A stop is the user's, not an exit of the container's own: it
leaves no exit for the next ``desiredState: Running`` pass to read back (see
`stopped_statuses`). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from kukeon.api import (
    Cell,
    CellState,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ContainerTerminated,
    EventReason,
)

from .cellplan import Note, failure_code, started_by
from .cellstate import restart_owed


@dataclass(frozen=True, slots=True)
class StopPlan:
    """``desiredState: Stopped``: every task stopped, the containers kept."""

    killing: tuple[Note, ...]
    """Before the stop: one per container that runs."""
    stopped: tuple[Note, ...]
    """After it: the cell's ``Stopped`` unless it already was."""


def plan_stop(cell: Cell) -> StopPlan:
    killing = tuple(
        Note(EventReason.KILLING, f"stopping container {c.id}")
        for c in cell.status.containers
        if c.state in (ContainerState.RUNNING, ContainerState.PAUSED)
    )
    stopped = (
        (Note(EventReason.STOPPED, "stopped (desiredState is Stopped)"),)
        if cell.status.state != CellState.STOPPED
        else ()
    )
    return StopPlan(killing=killing, stopped=stopped)


def stopped_statuses(
    cell: Cell, containers: Sequence[ContainerSpec], *, at: datetime
) -> list[ContainerStatus]:
    """The containers' statuses once their tasks were stopped at `at` (root first).

    A stop is no exit of the container's own: a task that ran is left without an exit
    code, and a restart its exit still waited for is dropped (the exit kept in
    ``lastState``), so ``desiredState: Running`` starts both at once as docker's start does,
    with the crash loop over. Had the exit stayed, the start would read it back as a new
    one: a back-off of up to 5 minutes, or never a start for on-failure at its last retry.
    A container that ended for good keeps its exit (a start leaves it ended)."""
    previous = {status.id: status for status in cell.status.containers}
    statuses: list[ContainerStatus] = []
    for container in containers:
        status = previous.get(container.id) or ContainerStatus(id=container.id)
        if status.state in (ContainerState.RUNNING, ContainerState.PAUSED):
            status = status.model_copy(
                update={
                    "state": ContainerState.STOPPED,
                    "pid": None,
                    "exit_code": None,
                    "exit_signal": None,
                    "start_time": started_by(status.start_time, at),
                    "finish_time": at,
                    "started": False,
                    "ready": False,
                }
            )
        elif status.state == ContainerState.WAITING:
            status = _wait_dropped(status, status.last_state)
        elif status.exit_code is not None and _waits_for_restart(container, status):
            status = _wait_dropped(status, _ended(status, status.exit_code))
        statuses.append(status)
    return statuses


def _waits_for_restart(spec: ContainerSpec, status: ContainerStatus) -> bool:
    """Whether `status` is an exit its restart policy restarts (now or after a back-off)."""
    if status.exit_code is None or status.pid is not None:
        return False
    return restart_owed(
        policy=str(spec.restart_policy),
        exit_code=failure_code(status.exit_code, status.reason),
        restart_count=status.restart_count,
        max_retries=spec.restart_max_retries,
    )


def _ended(status: ContainerStatus, exit_code: int) -> ContainerTerminated:
    """The exit of a status written before ``Waiting`` existed (the exit's own fields)."""
    return ContainerTerminated(
        exit_code=exit_code,
        signal=status.exit_signal,
        reason=status.reason,
        started_at=status.start_time,
        finished_at=status.finish_time,
    )


def _wait_dropped(status: ContainerStatus, last: ContainerTerminated | None) -> ContainerStatus:
    """A container whose restart a stop cancelled: stopped, its exit the last state."""
    return status.model_copy(
        update={
            "state": ContainerState.STOPPED,
            "exit_code": None,
            "exit_signal": None,
            "reason": None,
            "message": None,
            "restart_time": None,
            "backoff_restarts": None,
            "started": False,
            "ready": False,
            "last_state": last,
        }
    )
