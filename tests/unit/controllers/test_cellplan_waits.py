"""The planner on a container waiting out its restart back-off, when something else
happens during the wait: its shim dies (the exit is then read back from the status, the
last line it wrote included), its restart policy is edited (the exit ends up in one place:
its own fields when it stays down, ``lastState`` when it restarts or waits), or a user
restarts it (the exit it waited after becomes ``lastState``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kukeon.api import ContainerSpec, ContainerState, ContainerStatus, ContainerTerminated
from kukeon.controllers.cellplan import (
    ContainerInputs,
    ContainerPlan,
    ObservedContainer,
    ObservedTask,
    StartTask,
    plan_container,
)
from kukeon.runtime.containerd.tasks import TaskStatus

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DIGEST = "d1"
SAID = "panic: no config"
EXIT = ContainerTerminated(
    exit_code=3,
    reason="Error",
    message=SAID,
    started_at=T0 - timedelta(seconds=5),
    finished_at=T0 - timedelta(seconds=2),
)


def spec(policy: str, **fields: Any) -> ContainerSpec:
    return ContainerSpec.model_validate(
        {"id": "app", "image": "busybox", "restartPolicy": policy, **fields}
    )


def waiting() -> ContainerStatus:
    """A container that exited with EXIT and waits until T0 + 8 s for its restart."""
    return ContainerStatus(
        id="app",
        name="s_st_c_app",
        image="busybox",
        state=ContainerState.WAITING,
        restart_count=2,
        backoff_restarts=2,
        reason="CrashLoopBackOff",
        message="back-off 10s restarting failed container=app, due 2026-01-01T12:00:08Z",
        restart_time=T0 + timedelta(seconds=8),
        last_state=EXIT,
    )


def plan(
    container_spec: ContainerSpec,
    previous: ContainerStatus,
    task: ObservedTask | None,
    *,
    now: datetime = T0,
    restarted_at: str = "",
) -> ContainerPlan:
    return plan_container(
        ContainerInputs(
            spec=container_spec,
            name="s_st_c_app",
            root=True,
            digest=DIGEST,
            restarted_at=restarted_at,
            previous=previous,
            container=ObservedContainer(spec_digest=DIGEST, restarted_at=""),
            task=task,
            now=now,
        )
    )


def exited_task() -> ObservedTask:
    assert EXIT.finished_at is not None
    return ObservedTask(
        TaskStatus.STOPPED, pid=100, exit_status=3, exited_at=EXIT.finished_at, last_line=SAID
    )


def test_a_shim_dead_during_the_wait_keeps_the_last_line_while_waiting() -> None:
    result = plan(spec("always", restartBackoffSeconds=10), waiting(), None)
    assert result.status.state == ContainerState.WAITING
    assert result.status.last_state == EXIT
    assert result.status == waiting()  # nothing changed: nothing to write
    assert result.actions == ()


def test_a_shim_dead_during_the_wait_keeps_the_last_line_once_restarted() -> None:
    later = T0 + timedelta(seconds=9)
    result = plan(spec("always", restartBackoffSeconds=10), waiting(), None, now=later)
    assert result.actions == (StartTask(restart=True),)
    assert result.status.last_state == EXIT


def test_a_policy_edited_to_never_during_the_wait_leaves_the_exit_its_own() -> None:
    for task in (exited_task(), None):  # its shim alive or dead
        result = plan(spec("never"), waiting(), task)
        status = result.status
        assert status.state == ContainerState.FAILED
        assert (status.exit_code, status.reason, status.message) == (3, "Error", SAID)
        assert (status.start_time, status.finish_time) == (EXIT.started_at, EXIT.finished_at)
        assert status.last_state is None  # not said twice
        assert status.restart_time is None
        assert result.actions == ()


def test_max_retries_lowered_during_the_wait_says_the_exit_once() -> None:
    result = plan(spec("on-failure", restartMaxRetries=2), waiting(), exited_task())
    status = result.status
    assert status.state == ContainerState.FAILED
    assert status.message == f"{SAID} (not restarted: 2 restarts made (restartMaxRetries 2))"
    assert status.last_state is None
    # Read back after its shim died, the message is not extended again.
    again = plan(spec("on-failure", restartMaxRetries=2), status, None)
    assert again.status == status


def test_a_container_left_down_and_edited_to_always_waits_with_its_exit_as_last_state() -> None:
    down = plan(spec("never"), waiting(), exited_task()).status
    result = plan(spec("always", restartBackoffSeconds=10), down, exited_task())
    status = result.status
    assert status.state == ContainerState.WAITING
    assert (status.exit_code, status.finish_time, status.start_time) == (None, None, None)
    assert status.last_state == EXIT


def test_a_restart_requested_during_the_wait_keeps_the_exit_as_last_state() -> None:
    result = plan(
        spec("always", restartBackoffSeconds=10),
        waiting(),
        exited_task(),
        restarted_at="2026-01-01T12:00:00Z",
    )
    assert result.start == StartTask(restart=False)
    status = result.status
    assert status.state == ContainerState.RUNNING
    assert (status.exit_code, status.finish_time, status.reason, status.message) == (None,) * 4
    assert status.last_state == EXIT
