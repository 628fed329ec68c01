"""The cell controller's planner: every decision about a container and a cell, without a host.

Restart policy x exit code x retries x backoff for an exited task; the containers created,
recreated and started; a task whose shim died (no exit time: the timer starts when the exit
is first seen and never moves); desiredState, autoDelete and readyObserved for the cell;
and a property: applying a plan to the observed state and planning again asks for nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.api import (
    Cell,
    CellState,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ContainerTerminated,
    EventReason,
)
from kukeon.controllers.cellplan import (
    ContainerInputs,
    ContainerPlan,
    CreateContainer,
    DeleteTask,
    ObservedContainer,
    ObservedTask,
    RemoveContainer,
    StartTask,
    exit_signal_name,
    plan_cell,
    plan_container,
)
from kukeon.controllers.cellstop import plan_stop, stopped_statuses
from kukeon.runtime.containerd.tasks import TaskStatus

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DIGEST = "d1"
NAME = "s_st_c_app"


def spec(
    policy: str = "never", *, retries: int | None = None, backoff: int | None = None
) -> ContainerSpec:
    fields: dict[str, Any] = {"id": "app", "image": "busybox", "restartPolicy": policy}
    if retries is not None:
        fields["restartMaxRetries"] = retries
    if backoff is not None:
        fields["restartBackoffSeconds"] = backoff
    return ContainerSpec.model_validate(fields)


def ran(**fields: Any) -> ContainerStatus:
    """The status of a container reported running since T0 - 1 h."""
    base: dict[str, Any] = {
        "id": "app",
        "name": NAME,
        "image": "busybox",
        "state": ContainerState.RUNNING,
        "pid": 100,
        "start_time": T0 - timedelta(hours=1),
    }
    return ContainerStatus(**{**base, **fields})


def kept() -> ObservedContainer:
    return ObservedContainer(spec_digest=DIGEST, restarted_at="")


def stopped_task(code: int, *, at: datetime | None, oom: bool = False) -> ObservedTask:
    return ObservedTask(TaskStatus.STOPPED, pid=100, exit_status=code, exited_at=at, oom_killed=oom)


def plan(
    container_spec: ContainerSpec,
    *,
    previous: ContainerStatus | None,
    container: ObservedContainer | None,
    task: ObservedTask | None,
    now: datetime = T0,
    digest: str = DIGEST,
    restarted_at: str = "",
) -> ContainerPlan:
    return plan_container(
        ContainerInputs(
            spec=container_spec,
            name=NAME,
            root=True,
            digest=digest,
            restarted_at=restarted_at,
            previous=previous,
            container=container,
            task=task,
            now=now,
        )
    )


# --- restart policy x exit code x retries x backoff ----------------------------------------

POLICIES = ["never", "on-failure", "always"]
CODES = [0, 1, 137]


def owed_by_rule(policy: str, code: int, count: int, retries: int | None) -> bool:
    if policy == "always":
        return True
    limit = 5 if retries is None else retries
    return policy == "on-failure" and code != 0 and count < limit


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize(("count", "retries"), [(0, None), (4, None), (5, None), (1, 2), (2, 2)])
@pytest.mark.parametrize(("backoff", "elapsed"), [(None, 0), (None, 30), (5, 4.5), (5, 5), (5, 60)])
def test_an_exited_task(
    policy: str, code: int, count: int, retries: int | None, backoff: int | None, elapsed: float
) -> None:
    if policy != "on-failure":
        retries = None
    if policy == "never":
        backoff = None
    finished = T0 - timedelta(seconds=elapsed)
    previous = ran(restart_count=count)
    result = plan(
        spec(policy, retries=retries, backoff=backoff),
        previous=previous,
        container=kept(),
        task=stopped_task(code, at=finished),
    )
    owed = owed_by_rule(policy, code, count, retries)
    # Unset, the first exit of a loop restarts at once (and this run lasted an hour).
    pause = 0 if backoff is None else backoff
    due = elapsed >= pause
    exited = result.notes[0]
    assert exited.reason == EventReason.EXITED
    assert exited.warning == (code != 0)
    assert f"exited with code {code}" in exited.message
    assert not result.record_exit
    status = result.status
    if owed and due:
        assert result.actions == (DeleteTask(), StartTask(restart=True))
        assert status.state == ContainerState.RUNNING
        assert status.restart_count == count + 1
        assert status.backoff_restarts == 1
        assert (status.start_time, status.restart_time) == (T0, None)
        assert status.reason is None
        # It runs again: it has not exited; how it last ended is lastState's.
        assert (status.exit_code, status.exit_signal, status.finish_time) == (None, None, None)
        assert status.last_state is not None
        assert status.last_state.exit_code == code
        assert status.last_state.signal == exit_signal_name(code)
        assert status.last_state.started_at == previous.start_time
        assert status.last_state.finished_at == finished
        assert result.wake_in is None
        assert result.observation.running
        assert not result.observation.restart_owed
        assert result.started(4242, at=T0 + timedelta(seconds=1)).pid == 4242
    elif owed:  # it waits for its restart: Kubernetes' state.waiting, the exit lastState
        assert status.state == ContainerState.WAITING
        assert (status.exit_code, status.finish_time, status.pid) == (None, None, None)
        assert status.last_state is not None
        assert (status.last_state.exit_code, status.last_state.signal) == (
            code,
            exit_signal_name(code),
        )
        assert status.last_state.finished_at == finished
    else:  # it has ended for good
        assert status.exit_code == code
        assert status.exit_signal == exit_signal_name(code)
        assert status.finish_time == finished
    if owed and not due:
        assert result.actions == ()
        assert [n.reason for n in result.notes[1:]] == [EventReason.BACK_OFF]
        assert result.wake_in == pytest.approx(pause - elapsed)
        assert result.restart_at == finished + timedelta(seconds=pause)
        assert status.restart_time == result.restart_at
        assert status.reason == "CrashLoopBackOff"
        assert status.message is not None
        assert status.message.startswith(f"back-off {pause}s restarting")
        assert status.restart_count == count
        assert result.observation.restart_owed
        assert not result.observation.running
    elif not owed:
        assert result.actions == ()
        assert len(result.notes) == 1
        assert result.wake_in is None
        assert status.state == (ContainerState.STOPPED if code == 0 else ContainerState.FAILED)
        assert status.reason == ("Completed" if code == 0 else "Error")
        assert status.pid is None
        assert result.observation.exit_code == code
        assert not result.observation.restart_owed


def test_an_oom_kill_is_its_own_reason_and_event() -> None:
    result = plan(
        spec("never"),
        previous=ran(),
        container=kept(),
        task=stopped_task(137, at=T0, oom=True),
    )
    assert result.status.reason == "OOMKilled"
    assert result.status.exit_signal == "SIGKILL"
    [note] = result.notes
    assert note.reason == EventReason.OOM_KILLED
    assert note.warning


def test_a_failed_exit_says_the_last_line_the_process_wrote() -> None:
    """As Kubernetes' FallbackToLogsOnError: `describe` shows why without reading logs."""
    said = "exec /bin/app: argument list too long"
    task = ObservedTask(TaskStatus.STOPPED, pid=100, exit_status=1, exited_at=T0, last_line=said)
    ended = plan(spec("never"), previous=ran(), container=kept(), task=task)
    assert (ended.status.reason, ended.status.message) == ("Error", said)
    waiting = plan(spec("always", backoff=5), previous=ran(), container=kept(), task=task)
    assert waiting.status.message is not None
    assert waiting.status.message.startswith("back-off 5s restarting failed container=app")
    assert waiting.status.last_state is not None
    assert waiting.status.last_state.message == said  # Kubernetes' lastState.terminated


def test_an_exit_seen_again_is_no_news() -> None:
    finished = T0 - timedelta(seconds=2)
    first = plan(
        spec("always", backoff=10),
        previous=ran(),
        container=kept(),
        task=stopped_task(1, at=finished),
    )
    again = plan(
        spec("always", backoff=10),
        previous=first.status,
        container=kept(),
        task=stopped_task(1, at=finished),
        now=T0 + timedelta(seconds=1),
    )
    assert [n.reason for n in again.notes] == [EventReason.BACK_OFF]
    assert again.wake_in == pytest.approx(7)


def test_signal_names() -> None:
    assert exit_signal_name(137) == "SIGKILL"
    assert exit_signal_name(143) == "SIGTERM"
    assert exit_signal_name(1) is None
    assert exit_signal_name(128 + 32) is None  # the C library's own, no name
    assert exit_signal_name(128 + 65) is None
    assert exit_signal_name(128 + 37) == "SIGRTMIN+3"  # systemd's stop signal
    assert exit_signal_name(128 + 63) == "SIGRTMAX-1"
    assert exit_signal_name(128 + 64) == "SIGRTMAX"


# --- creating, recreating, starting --------------------------------------------------------


def test_a_new_container_is_created_and_started() -> None:
    result = plan(spec(), previous=None, container=None, task=None)
    assert result.actions == (CreateContainer(), StartTask(restart=False))
    assert result.notes == ()
    assert result.status.state == ContainerState.RUNNING
    assert result.status.name == NAME
    assert result.status.start_time == T0
    started = result.started(7, at=T0 + timedelta(seconds=3))
    assert started.pid == 7
    assert started.start_time == T0 + timedelta(seconds=3)
    assert started.restart_time is None


def test_a_changed_spec_recreates_the_container_with_a_new_history() -> None:
    previous = ran(restart_count=3, exit_code=1, finish_time=T0)
    result = plan(
        spec(),
        previous=previous,
        container=ObservedContainer(spec_digest="old", restarted_at=""),
        task=ObservedTask(TaskStatus.RUNNING, pid=100),
    )
    assert result.actions == (
        RemoveContainer("SpecChanged"),
        CreateContainer(),
        StartTask(restart=False),
    )
    assert result.status.restart_count == 0
    assert result.status.exit_code is None
    assert result.status.finish_time is None


def test_a_restart_request_recreates_the_container_keeping_its_history() -> None:
    result = plan(
        spec(),
        previous=ran(restart_count=3, backoff_restarts=3),
        container=kept(),
        task=ObservedTask(TaskStatus.RUNNING, pid=100),
        restarted_at="2026-01-01T12:00:00Z",
    )
    assert result.actions == (
        RemoveContainer("RestartRequested"),
        CreateContainer(),
        StartTask(restart=False),
    )
    assert result.status.restart_count == 3
    assert result.status.backoff_restarts is None  # a crash loop starts over, as a new pod's


@pytest.mark.parametrize(
    ("task_status", "state"),
    [
        (TaskStatus.RUNNING, ContainerState.RUNNING),
        (TaskStatus.PAUSED, ContainerState.PAUSED),
        (TaskStatus.PAUSING, ContainerState.PAUSED),
    ],
)
def test_a_live_task_is_reported(task_status: TaskStatus, state: ContainerState) -> None:
    result = plan(
        spec(),
        previous=ran(reason="Pulling", message="x"),
        container=kept(),
        task=ObservedTask(task_status, pid=321),
    )
    assert result.actions == ()
    assert result.status.state == state
    assert result.status.pid == 321
    assert result.status.reason is None
    assert result.status.message is None
    assert result.observation.running == (state == ContainerState.RUNNING)


def test_a_created_task_is_replaced_and_started() -> None:
    result = plan(
        spec(),
        previous=None,
        container=kept(),
        task=ObservedTask(TaskStatus.CREATED, pid=5),
    )
    assert result.actions == (DeleteTask(), StartTask(restart=False))


def test_a_kept_container_that_never_ran_is_started() -> None:
    result = plan(spec(), previous=None, container=kept(), task=None)
    assert result.actions == (StartTask(restart=False),)


def test_an_exit_recorded_before_its_task_went_decides_as_before() -> None:
    finished = T0 - timedelta(seconds=40)
    previous = ran(
        state=ContainerState.FAILED, pid=None, exit_code=2, finish_time=finished, reason="Error"
    )
    result = plan(spec("always"), previous=previous, container=kept(), task=None)
    assert result.actions == (StartTask(restart=True),)
    assert result.status.last_state is not None
    assert result.status.last_state.reason == "Error"
    assert result.notes == ()  # already reported


# --- the default back-off: Kubernetes' CrashLoopBackOff --------------------------------------


def exit_and_restart(
    container_spec: ContainerSpec, status: ContainerStatus, *, ran_for: float
) -> tuple[float, ContainerStatus]:
    """The task started at `status.start_time` exits `ran_for` seconds later: the pause the
    planner waits (its BackOff and status message say it), and the status once restarted.
    Each pass plans from the status as stored (JSON and back), as a restarted kukeond does."""
    assert status.start_time is not None
    finished = status.start_time + timedelta(seconds=ran_for)
    task = stopped_task(1, at=finished)

    def stored(s: ContainerStatus) -> ContainerStatus:
        return ContainerStatus.model_validate(s.model_dump(mode="json", by_alias=True))

    seen = plan(container_spec, previous=stored(status), container=kept(), task=task, now=finished)
    if seen.start is not None:
        assert (seen.status.reason, seen.status.message) == (None, None)  # it runs again
        return 0.0, seen.started(status.pid or 1, at=finished)
    assert seen.wake_in is not None
    assert seen.restart_at is not None
    assert [n.reason for n in seen.notes[1:]] == [EventReason.BACK_OFF]
    said, _, due_at = (seen.status.message or "").partition(", due ")
    assert said == f"back-off {seen.wake_in:.0f}s restarting failed container=app"
    assert (seen.status.state, seen.status.reason) == (ContainerState.WAITING, "CrashLoopBackOff")
    assert seen.status.restart_time == seen.restart_at
    shown = datetime.strptime(due_at, "%Y-%m-%dT%H:%M:%S%z")  # the due time, rounded up
    assert timedelta(0) <= shown - seen.restart_at < timedelta(seconds=1)
    waiting = seen.status
    halfway = finished + timedelta(seconds=seen.wake_in / 2)
    again = plan(container_spec, previous=stored(waiting), container=kept(), task=task, now=halfway)
    assert again.restart_at == seen.restart_at  # the same pause after a kukeond restart
    assert again.status == stored(waiting)  # the same status: nothing to write while it waits
    assert again.start is None
    due = plan(
        container_spec,
        previous=stored(again.status),
        container=kept(),
        task=task,
        now=seen.restart_at,
    )
    assert due.start == StartTask(restart=True)
    return seen.wake_in, due.started(status.pid or 1, at=seen.restart_at)


def pauses_of(
    runs: list[float], *, backoff: int | None = None, previous: ContainerStatus | None = None
) -> list[float]:
    container_spec = spec("always", backoff=backoff)
    status = previous or ran(start_time=T0)
    pauses = []
    for run in runs:
        pause, status = exit_and_restart(container_spec, status, ran_for=run)
        pauses.append(pause)
    return pauses


def test_a_crash_loop_restarts_at_once_then_after_ten_seconds_doubling_to_five_minutes() -> None:
    assert pauses_of([0.1] * 8) == [0, 10, 20, 40, 80, 160, 300, 300]


def test_a_run_of_ten_minutes_starts_the_loop_over() -> None:
    assert pauses_of([2, 2, 2, 600, 2, 2]) == [0, 10, 20, 0, 10, 20]
    assert pauses_of([2, 2, 2, 599, 2]) == [0, 10, 20, 40, 80]


def test_an_explicit_backoff_stays_a_fixed_pause() -> None:
    assert pauses_of([0.1, 0.1, 0.1, 700, 0.1], backoff=3) == [3, 3, 3, 3, 3]


def test_a_status_stored_before_the_loop_count_starts_the_loop_over() -> None:
    """A document written before ``backoffRestarts`` existed reads as 0: the first exit
    after the upgrade restarts at once, the next ones back off from 10 s."""
    old = ContainerStatus.model_validate(
        {
            "id": "app",
            "name": NAME,
            "state": "Ready",
            "pid": 100,
            "restartCount": 40,
            "startTime": T0.isoformat(),
            "restartTime": T0.isoformat(),
        }
    )
    assert old.backoff_restarts is None
    assert pauses_of([1, 1, 1], previous=old) == [0, 10, 20]


def test_restart_max_retries_still_counts_every_restart() -> None:
    """on-failure gives up after restartMaxRetries restarts, whatever the loop's state."""
    container_spec = spec("on-failure", retries=2)
    status = ran(start_time=T0)
    for _ in range(2):
        _, status = exit_and_restart(container_spec, status, ran_for=700)
    assert (status.restart_count, status.backoff_restarts) == (2, 1)
    assert status.start_time is not None
    finished = status.start_time + timedelta(seconds=1)
    ended = plan(
        container_spec, previous=status, container=kept(), task=stopped_task(1, at=finished)
    )
    assert ended.actions == ()
    assert not ended.observation.restart_owed
    # the status says why it stays down (after what the process said last, if anything)
    assert ended.status.message == "not restarted: 2 restarts made (restartMaxRetries 2)"
    said = dataclasses.replace(stopped_task(1, at=finished), last_line="boom")
    ended = plan(container_spec, previous=status, container=kept(), task=said)
    assert ended.status.message == "boom (not restarted: 2 restarts made (restartMaxRetries 2))"


def test_a_restart_at_the_counters_bound_is_still_reported() -> None:
    """A status at int64's bound (valid, written by hand) is restarted with counters that
    stay valid: one past the bound would fail every status write from then on, the
    restart made but never reported (``restartCount`` frozen, an error each pass)."""
    top = 2**63 - 1
    status = ran(restart_count=top, backoff_restarts=top, start_time=T0 - timedelta(seconds=1))
    due = T0 + timedelta(seconds=300)
    result = plan(
        spec("always"), previous=status, container=kept(), task=stopped_task(1, at=T0), now=due
    )
    assert result.start == StartTask(restart=True)
    stored = ContainerStatus.model_validate(result.status.model_dump(mode="json", by_alias=True))
    assert (stored.restart_count, stored.backoff_restarts) == (top, top)


# --- a task whose shim died (issue 17, item 2) -----------------------------------------------


@pytest.mark.parametrize("task", [None, ObservedTask(TaskStatus.UNKNOWN, exit_status=137)])
def test_a_lost_task_restarts_once_the_backoff_after_its_first_sight_has_passed(
    task: ObservedTask | None,
) -> None:
    container_spec = spec("always", backoff=10)
    first = plan(container_spec, previous=ran(), container=kept(), task=task)
    assert first.record_exit  # the executor writes it at once
    last = first.status.last_state
    assert last is not None
    assert (last.finished_at, last.exit_code) == (T0, 137)
    assert last.reason == ("TaskLost" if task is None else "Error")
    assert first.wake_in == pytest.approx(10)
    status = first.status
    for seconds in (1, 4, 9.5):
        later = plan(
            container_spec,
            previous=status,
            container=kept(),
            task=task,
            now=T0 + timedelta(seconds=seconds),
        )
        assert later.actions == ()
        assert not later.record_exit
        assert later.status.last_state == last  # the timer never moves forward
        assert later.wake_in == pytest.approx(10 - seconds)
        assert [n.reason for n in later.notes] == [EventReason.BACK_OFF]
        status = later.status
    due = plan(
        container_spec,
        previous=status,
        container=kept(),
        task=task,
        now=T0 + timedelta(seconds=10),
    )
    assert StartTask(restart=True) in due.actions
    assert due.status.restart_count == 1
    assert due.status.last_state is not None
    assert due.status.last_state.finished_at == T0


def test_an_exit_time_of_an_earlier_instance_is_not_reused() -> None:
    """After a restart the status still holds the previous exit's time; a new instance
    that is lost starts its own timer."""
    previous = ran(pid=200, exit_code=1, finish_time=T0 - timedelta(hours=2), restart_count=1)
    result = plan(
        spec("always", backoff=10),
        previous=previous,
        container=kept(),
        task=ObservedTask(TaskStatus.UNKNOWN, exit_status=137),
    )
    assert result.status.last_state is not None
    assert result.status.last_state.finished_at == T0
    assert result.record_exit
    assert result.actions == ()


# --- the cell ------------------------------------------------------------------------------


def cell(
    *,
    auto_delete: bool = False,
    ready_observed: bool = False,
    reason: str | None = None,
    state: str = "Pending",
    containers: list[ContainerStatus] | None = None,
    desired: str = "Running",
) -> Cell:
    return Cell.model_validate(
        {
            "metadata": {"name": "c"},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "autoDelete": auto_delete,
                "desiredState": desired,
                "containers": [
                    {"id": "app", "image": "busybox"},
                    {"id": "side", "image": "busybox"},
                ],
            },
            "status": {
                "state": state,
                "readyObserved": ready_observed,
                "reason": reason,
                "containers": [c.model_dump(by_alias=True) for c in containers or []],
            },
        }
    )


def container_plan(*, running: bool, code: int | None = None, owed: bool = False) -> ContainerPlan:
    if running:
        return plan(spec(), previous=ran(), container=kept(), task=ObservedTask(TaskStatus.RUNNING))
    policy = "always" if owed else "never"
    return plan(
        spec(policy, backoff=10 if owed else None),
        previous=ran(),
        container=kept(),
        task=stopped_task(code or 0, at=T0),
    )


@pytest.mark.parametrize("auto_delete", [False, True])
@pytest.mark.parametrize("ready_observed", [False, True])
@pytest.mark.parametrize(
    ("workloads", "state"),
    [
        ("running", CellState.READY),
        ("exited", CellState.EXITED),
        ("failed", CellState.ERROR),
        ("owed", CellState.DEGRADED),
        ("mixed", CellState.DEGRADED),
    ],
)
def test_the_cell_plan(
    auto_delete: bool, ready_observed: bool, workloads: str, state: CellState
) -> None:
    plans = {
        "running": [container_plan(running=True), container_plan(running=True)],
        "exited": [container_plan(running=False, code=0), container_plan(running=False, code=0)],
        "failed": [container_plan(running=False, code=1), container_plan(running=True)],
        "owed": [container_plan(running=False, code=1, owed=True), container_plan(running=True)],
        "mixed": [container_plan(running=True), container_plan(running=False, code=0)],
    }[workloads]
    result = plan_cell(cell(auto_delete=auto_delete, ready_observed=ready_observed), plans)
    assert result.state == state
    latched = ready_observed or state == CellState.READY
    assert result.ready_observed == latched
    assert result.delete == (auto_delete and latched and workloads == "exited")
    assert (result.wake_in is not None) == (workloads == "owed")
    assert result.clear_reason == (workloads != "owed")


def test_a_pull_note_is_cleared_even_while_waiting() -> None:
    plans = [container_plan(running=False, code=1, owed=True)]
    assert plan_cell(cell(reason="Pulling"), plans).clear_reason
    assert not plan_cell(cell(reason="Other"), plans).clear_reason
    assert plan_cell(cell(), []).state == CellState.PENDING
    assert not plan_cell(cell(auto_delete=True, ready_observed=True), []).delete


def test_a_cell_in_error_says_which_container_failed_and_how() -> None:
    """Its reason and message name the container and its exit (they were empty: describe
    showed `State: Error`, `Reason: <none>`); a cell whose containers exited 0 says nothing."""
    oom = plan(spec(), previous=ran(), container=kept(), task=stopped_task(137, at=T0, oom=True))
    result = plan_cell(cell(), [oom, container_plan(running=True)])
    assert result.state == CellState.ERROR
    assert (result.failed_reason, result.failed) == (
        "ContainerFailed",
        "container app exited with code 137 (OOMKilled)",
    )
    boom = plan(spec(), previous=ran(), container=kept(), task=stopped_task(3, at=T0))
    boom = dataclasses.replace(boom, status=boom.status.model_copy(update={"message": "boom"}))
    assert plan_cell(cell(), [boom]).failed == "container app exited with code 3: boom"
    exited = plan_cell(cell(), [container_plan(running=False, code=0)])
    assert exited.state == CellState.EXITED
    assert (exited.failed_reason, exited.failed) == (None, None)


@pytest.mark.parametrize("already", [False, True])
def test_stopping_a_cell(already: bool) -> None:
    statuses = [
        ran(started=True, ready=True),
        ran(id="side", state=ContainerState.FAILED, pid=None, exit_code=1),
    ]
    subject = cell(desired="Stopped", state="Stopped" if already else "Ready", containers=statuses)
    result = plan_stop(subject)
    assert [n.message for n in result.killing] == ["stopping container app"]
    assert [n.reason for n in result.stopped] == ([] if already else [EventReason.STOPPED])
    after = stopped_statuses(subject, subject.spec.containers, at=T0)
    assert after[0].state == ContainerState.STOPPED
    assert after[0].pid is None
    assert after[0].finish_time == T0
    assert statuses[0].ready
    assert not after[0].ready  # a stopped container is not ready (kukectl's READY 0/1)
    assert not after[0].started
    assert after[1] == statuses[1]
    extra = stopped_statuses(
        subject, [*subject.spec.containers, spec().model_copy(update={"id": "new"})], at=T0
    )
    assert extra[2] == ContainerStatus(id="new")


# --- idempotence ---------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    container: ObservedContainer | None
    task: ObservedTask | None


def apply(
    result: ContainerPlan, world: World, *, digest: str, restarted_at: str
) -> tuple[World, ContainerStatus]:
    """What the executor does to containerd, simulated."""
    container, task = world.container, world.task
    status = result.status
    for action in result.actions:
        if isinstance(action, RemoveContainer):
            container, task = None, None
        elif isinstance(action, CreateContainer):
            container = ObservedContainer(spec_digest=digest, restarted_at=restarted_at)
        elif isinstance(action, DeleteTask):
            task = None
        elif isinstance(action, StartTask):
            task = ObservedTask(TaskStatus.RUNNING, pid=9999)
            status = result.started(9999, at=T0)
    return World(container, task), status


times = st.one_of(st.none(), st.integers(-4000, 60).map(lambda s: T0 + timedelta(seconds=s)))


@st.composite
def specs(draw: st.DrawFn) -> ContainerSpec:
    policy = draw(st.sampled_from(POLICIES))
    retries = draw(st.one_of(st.none(), st.integers(1, 6))) if policy == "on-failure" else None
    backoff = draw(st.one_of(st.none(), st.integers(1, 300))) if policy != "never" else None
    return spec(policy, retries=retries, backoff=backoff)


@st.composite
def statuses(draw: st.DrawFn) -> ContainerStatus | None:
    if draw(st.booleans()):
        return None
    return ContainerStatus(
        id="app",
        state=draw(st.sampled_from(list(ContainerState))),
        pid=draw(st.one_of(st.none(), st.integers(0, 5000))),
        exit_code=draw(st.one_of(st.none(), st.sampled_from(CODES))),
        finish_time=draw(times),
        start_time=draw(times),
        restart_count=draw(st.integers(0, 7)),
        backoff_restarts=draw(st.integers(0, 8)),
        reason=draw(st.one_of(st.none(), st.sampled_from(["Error", "TaskLost", "Completed"]))),
        # A Waiting status holds its exit here (read back as that exit).
        last_state=draw(
            st.one_of(
                st.none(),
                st.tuples(
                    st.sampled_from(CODES),
                    st.sampled_from([None, "Error", "Completed", "LivenessProbeFailed"]),
                    times,
                    times,
                ).map(
                    lambda t: ContainerTerminated(
                        exit_code=t[0], reason=t[1], started_at=t[2], finished_at=t[3]
                    )
                ),
            )
        ),
    )


@st.composite
def worlds(draw: st.DrawFn) -> World:
    container = draw(
        st.one_of(
            st.none(),
            st.builds(
                ObservedContainer,
                spec_digest=st.sampled_from([DIGEST, "old", None]),
                restarted_at=st.sampled_from(["", "then"]),
            ),
        )
    )
    task = draw(
        st.one_of(
            st.none(),
            st.builds(
                ObservedTask,
                status=st.sampled_from(list(TaskStatus)),
                pid=st.integers(1, 5000),
                exit_status=st.sampled_from(CODES),
                exited_at=times,
                oom_killed=st.booleans(),
            ),
        )
    )
    return World(container, task if container is not None else None)


@settings(max_examples=150, deadline=None)
@given(
    container_spec=specs(),
    previous=statuses(),
    world=worlds(),
    restarted_at=st.sampled_from(["", "then"]),
    later=st.floats(0, 0.5),
)
def test_a_plan_applied_then_planned_again_asks_for_nothing(
    container_spec: ContainerSpec,
    previous: ContainerStatus | None,
    world: World,
    restarted_at: str,
    later: float,
) -> None:
    first = plan(
        container_spec,
        previous=previous,
        container=world.container,
        task=world.task,
        restarted_at=restarted_at,
    )
    after, status = apply(first, world, digest=DIGEST, restarted_at=restarted_at)
    again = plan(
        container_spec,
        previous=status,
        container=after.container,
        task=after.task,
        restarted_at=restarted_at,
        now=T0 + timedelta(seconds=later),
    )
    assert again.actions == ()
    assert not again.record_exit
    assert {n.reason for n in again.notes} <= {EventReason.BACK_OFF}
    assert again.status.finish_time == status.finish_time
    expected = status if later == 0 else replace_message(status, again.status)
    assert again.status == expected
    assert again.observation == first.observation


def replace_message(before: ContainerStatus, after: ContainerStatus) -> ContainerStatus:
    """A wait's message counts the seconds left: the only field that may move."""
    return before.model_copy(update={"message": after.message})


def test_a_clock_stepped_back_during_a_back_off_delays_the_restart_by_the_pause_only() -> None:
    """The due time is on the wall clock (kept in the status across kukeond restarts); a
    clock stepped back a day while a 10 s back-off runs waited a day for the restart."""
    container_spec = spec("always", backoff=10)
    task = stopped_task(1, at=T0)

    def stored(s: ContainerStatus) -> ContainerStatus:
        return ContainerStatus.model_validate(s.model_dump(mode="json", by_alias=True))

    waiting = plan(container_spec, previous=ran(restart_count=1), container=kept(), task=task)
    assert waiting.wake_in == 10
    stepped = T0 - timedelta(days=1)
    back = plan(
        container_spec, previous=stored(waiting.status), container=kept(), task=task, now=stepped
    )
    assert back.start is None
    assert back.wake_in == 10
    assert back.restart_at == stepped + timedelta(seconds=10)
    # Read back, the wait it reported stands: nothing new to write halfway, then the start.
    halfway = stepped + timedelta(seconds=5)
    again = plan(
        container_spec, previous=stored(back.status), container=kept(), task=task, now=halfway
    )
    assert again.status == stored(back.status)
    assert again.wake_in == 5
    assert again.restart_at is not None
    due = plan(
        container_spec,
        previous=stored(again.status),
        container=kept(),
        task=task,
        now=again.restart_at,
    )
    assert due.start == StartTask(restart=True)
