"""What a cell's status says when some of its containers failed in a pass that converged
the others (`cellfailures.failed_containers`): one whose build failed while its container
of the former spec runs is held (the cell Degraded, the container Running and ready, the
reason naming it and why); one with nothing running fails, and the cell with it."""

from __future__ import annotations

from typing import Any

from kukeon.api import Cell, CellState, CellStatus, ContainerState
from kukeon.controllers.cellfailures import (
    ContainerFailure,
    ContainersFailedError,
    failed_containers,
    failed_fields,
)
from kukeon.controllers.cellfiles import SecretUnavailableError
from kukeon.framework import PermanentError, Requeue, TemporaryError
from kukeon.runtime.containerd.spec import RuntimeSpecError

from .test_cell_controller import make_cell

SECRET = SecretUnavailableError("container 'side' secret 'API_TOKEN': Secret 'later' not found")
SPEC = RuntimeSpecError(container="side", field="user", reason="no such user 'nobody2'")


def _cell(*statuses: dict[str, Any]) -> Cell:
    cell = make_cell({"id": "app", "image": "busybox"}, {"id": "side", "image": "busybox"})
    status = {"state": "Ready", "readyObserved": True, "containers": list(statuses)}
    return cell.model_copy(update={"status": CellStatus.model_validate(status)})


RUNNING = {"id": "side", "state": "Running", "pid": 42, "ready": True, "image": "busybox"}


def test_a_secret_missing_for_a_running_container_holds_it() -> None:
    failed = failed_containers(_cell(RUNNING), [ContainerFailure("side", SECRET, untouched=True)])
    assert (failed.state, failed.reason, failed.retry) == (
        CellState.DEGRADED,
        "SecretUnavailable",
        TemporaryError,
    )
    assert failed.message.startswith("container side keeps running as it was")
    assert str(SECRET) in failed.message
    side = failed.statuses["side"]
    assert (side.state, side.pid, side.ready) == (ContainerState.RUNNING, 42, True)
    assert (side.reason, side.message) == ("SecretUnavailable", failed.message)
    assert failed.events == (f"SecretUnavailable: {failed.message}",)


def test_a_spec_the_node_refuses_holds_a_running_container_until_the_spec_changes() -> None:
    failed = failed_containers(_cell(RUNNING), [ContainerFailure("side", SPEC, untouched=True)])
    assert (failed.state, failed.reason, failed.retry) == (
        CellState.DEGRADED,
        "InvalidSpec",
        PermanentError,
    )
    assert "(until its spec changes)" in failed.message


def test_a_container_with_nothing_running_fails_the_cell() -> None:
    # Its old container removed before the failure (a runc refusal of the new task), or
    # a container that never ran: Failed, its status saying why (no pid, not ready).
    for status, untouched in ((RUNNING, False), ({"id": "side", "state": "Failed"}, True)):
        failed = failed_containers(_cell(status), [ContainerFailure("side", SPEC, untouched)])
        assert (failed.state, failed.reason, failed.message) == (
            CellState.FAILED,
            "InvalidSpec",
            str(SPEC),
        )
        side = failed.statuses["side"]
        assert (side.state, side.pid, side.ready) == (ContainerState.FAILED, None, False)
    new = failed_containers(_cell(), [ContainerFailure("side", SECRET, untouched=False)])
    assert new.statuses["side"].reason == "SecretUnavailable"


def test_a_failed_container_is_said_before_a_held_one() -> None:
    cell = _cell({**RUNNING, "id": "app"})
    failures = [
        ContainerFailure("app", SECRET, untouched=True),
        ContainerFailure("side", SPEC, untouched=False),
    ]
    failed = failed_containers(cell, failures)
    assert (failed.state, failed.reason, failed.retry) == (
        CellState.FAILED,
        "InvalidSpec",
        TemporaryError,
    )
    assert failed.message.startswith(str(SPEC))
    assert len(failed.events) == 2


def test_the_fields_keep_the_converged_statuses_in_order_and_the_latch() -> None:
    cell = _cell(RUNNING)
    failed = failed_containers(cell, [ContainerFailure("side", SECRET, untouched=True)])
    app = cell.status.containers[0].model_copy(update={"id": "app", "pid": 7})
    fields = failed_fields(cell, failed, [app])
    assert [c.id for c in fields["containers"]] == ["app", "side"]
    assert fields["ready_observed"] is True
    assert fields["state"] == CellState.DEGRADED


def test_a_permanent_failure_beside_a_restart_due_later_comes_back_for_the_restart() -> None:
    failed = failed_containers(_cell(RUNNING), [ContainerFailure("side", SPEC, untouched=True)])
    later = ContainersFailedError(failed, wake_in=3.0).retry()
    assert isinstance(later, Requeue)
    assert isinstance(ContainersFailedError(failed, wake_in=None).retry(), PermanentError)
