"""A restarting container's status says what is true now, as Kubernetes' container status.

The wait for a restart is a statement that does not age (``back-off 40s ... due T``, not
"restarting in 40 s" written once and read a minute later); a container running again
shows no exit of its own (its previous run's end is ``lastState``, as Kubernetes'
``state.running`` beside ``lastState.terminated``); and a run never finishes before it
started, even when its process exits before kukeond's start call returns.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import pytest

from kukeon.api import Cell, ContainerState, ContainerStatus
from kukeon.controllers.cellplan import StartTask
from kukeon.controllers.cellstop import stopped_statuses
from kukeon.framework import HandlerContext, Requeue
from kukeon.runtime.containerd.tasks import TaskStatus

from .test_cell_controller import CID, FakeTasks, Rig, app, make_cell
from .test_cell_controller import rig as rig  # the fixture
from .test_cellplan import T0, kept, plan, ran, spec, stopped_task


def stored(status: ContainerStatus) -> ContainerStatus:
    """The status as etcd holds it (JSON and back), as the next pass reads it."""
    return ContainerStatus.model_validate(status.model_dump(mode="json", by_alias=True))


# --- 1. the wait for a restart does not age -------------------------------------------------


def test_a_back_off_says_its_length_and_due_time_and_reads_the_same_later() -> None:
    """The third restart in a row waits 40 s: the message says so and when, and a pass
    10 s or 39 s later plans the very same status (so it writes nothing)."""
    finished = T0 + timedelta(seconds=0.25)
    previous = ran(start_time=T0, restart_count=3, backoff_restarts=3)
    task = stopped_task(2, at=finished)
    container = spec("always")
    first = plan(container, previous=previous, container=kept(), task=task, now=finished)
    assert first.start is None
    assert first.status.message == (
        "back-off 40s restarting failed container=app, due 2026-01-01T12:00:41Z"
    )
    assert (first.status.state, first.status.reason) == (ContainerState.WAITING, "CrashLoopBackOff")
    assert first.status.restart_time == finished + timedelta(seconds=40)
    last = first.status.last_state
    assert last is not None
    assert (last.exit_code, last.started_at, last.finished_at) == (2, T0, finished)
    for later in (10, 39):
        again = plan(
            container,
            previous=stored(first.status),
            container=kept(),
            task=task,
            now=finished + timedelta(seconds=later),
        )
        assert again.start is None
        assert again.status == stored(first.status), later
        assert again.wake_in == pytest.approx(40 - later)


def test_a_clean_exit_waiting_to_restart_is_not_called_failed() -> None:
    finished = T0 + timedelta(seconds=1)
    previous = ran(start_time=T0, backoff_restarts=1)
    waiting = plan(
        spec("always"), previous=previous, container=kept(), task=stopped_task(0, at=finished)
    )
    assert waiting.status.message == (
        "back-off 10s restarting container=app, due 2026-01-01T12:00:11Z"
    )
    assert waiting.status.last_state is not None
    assert waiting.status.last_state.reason == "Completed"


# --- 2. a container running again has no exit of its own ------------------------------------


def test_a_restarted_container_runs_and_its_previous_exit_is_last_state() -> None:
    finished = T0 - timedelta(seconds=3)
    previous = ran(start_time=T0 - timedelta(seconds=4))
    restarted = plan(
        spec("always"),
        previous=previous,
        container=kept(),
        task=stopped_task(137, at=finished),
    )
    assert restarted.start == StartTask(restart=True)
    status = stored(restarted.started(4242, at=T0))
    assert status.state == ContainerState.RUNNING
    # restartTime is the due time of a restart that waits: none once it is made.
    assert (status.pid, status.start_time, status.restart_time) == (4242, T0, None)
    assert (status.exit_code, status.exit_signal, status.finish_time) == (None, None, None)
    assert (status.reason, status.message) == (None, None)
    last = status.last_state
    assert last is not None
    assert (last.exit_code, last.signal, last.reason) == (137, "SIGKILL", "Error")
    assert (last.started_at, last.finished_at) == (T0 - timedelta(seconds=4), finished)
    dumped = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert not {"exitCode", "exitSignal", "finishTime"} & dumped.keys()


# --- 3. a run never finishes before it started ----------------------------------------------


def test_an_exit_before_the_recorded_start_moves_the_start_to_the_exit() -> None:
    """The start recorded after containerd's exit time (the process exited at once):
    the run lasted no time, whether it waits, restarts or ends for good."""
    recorded_start = T0 + timedelta(milliseconds=30)
    previous = ran(start_time=recorded_start, backoff_restarts=1)
    for policy, backoff in (("never", None), ("always", None), ("always", 5)):
        result = plan(
            spec(policy, backoff=backoff),
            previous=previous,
            container=kept(),
            task=stopped_task(1, at=T0),
            now=T0 + timedelta(seconds=1),
        )
        if result.start is None and policy == "never":
            assert result.status.start_time == result.status.finish_time == T0, policy
        else:  # restarted, or waiting for it: the run that ended is lastState
            last = result.status.last_state
            assert last is not None
            assert last.started_at == last.finished_at == T0, policy


def test_a_stop_before_the_recorded_start_moves_the_start_to_the_stop() -> None:
    cell = make_cell(app()).model_copy(deep=True)
    cell.status.containers = [ran(start_time=T0 + timedelta(seconds=1))]
    [status] = stopped_statuses(cell, cell.spec.containers, at=T0)
    assert status.start_time == status.finish_time == T0


def _exiting_at_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, *, exit_at: float, returns_at: float
) -> None:
    """containerd's start of the task returns at `returns_at` s; the process exited at
    `exit_at` s, before it returned."""
    start = FakeTasks.start

    async def slow_start(self: FakeTasks, cid: str) -> int:
        pid = await start(self, cid)
        rig.world.exit(cid, 1, at=T0 + timedelta(seconds=exit_at), status=TaskStatus.STOPPED)
        rig.at(returns_at)
        return pid

    monkeypatch.setattr(FakeTasks, "start", slow_start)


async def _exited(rig: Rig, cell: Cell) -> ContainerStatus:
    with pytest.raises(Requeue):  # the next restart waits its back-off
        await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
    [status] = rig.latest(cell).status.containers
    return status


async def test_a_first_start_is_timed_before_the_start_call(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _exiting_at_once(rig, monkeypatch, exit_at=1, returns_at=2)
    cell = await rig.reconcile(make_cell(app(restartPolicy="always", restartBackoffSeconds=5)))
    [status] = cell.status.containers
    assert status.start_time == T0
    exited = (await _exited(rig, cell)).last_state
    assert exited is not None
    assert exited.finished_at == T0 + timedelta(seconds=1)
    assert exited.started_at == T0


async def test_a_restart_is_timed_before_the_start_call(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cell = await rig.reconcile(make_cell(app(restartPolicy="always")))
    rig.world.exit(CID, 1, at=T0 + timedelta(seconds=5), status=TaskStatus.STOPPED)
    rig.at(6)
    _exiting_at_once(rig, monkeypatch, exit_at=7, returns_at=8)
    cell = await rig.reconcile(cell)  # the first restart of a loop: at once
    [status] = cell.status.containers
    assert (status.restart_count, status.start_time) == (1, T0 + timedelta(seconds=6))
    assert status.finish_time is None
    exited = await _exited(rig, cell)
    assert exited.last_state is not None
    assert exited.last_state.started_at == T0 + timedelta(seconds=6)
    assert exited.last_state.finished_at == T0 + timedelta(seconds=7)
    assert exited.message is not None
    assert "back-off 10s" in exited.message


async def test_a_cell_waiting_for_a_restart_says_when_the_same_at_every_pass(rig: Rig) -> None:
    """The cell's own message (reason CrashLoopBackOff) names the container and the due
    time, not a countdown: a later pass of the same wait says the very same."""
    cell = await rig.reconcile(make_cell(app(restartPolicy="always", restartBackoffSeconds=5)))
    rig.world.exit(
        CID, 1, at=T0 + timedelta(seconds=10, milliseconds=200), status=TaskStatus.STOPPED
    )
    said = []
    for seconds in (11, 13):
        rig.at(seconds)
        with pytest.raises(Requeue) as waiting:
            await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
        assert waiting.value.reason == "CrashLoopBackOff"
        said.append(str(waiting.value))
        cell = rig.latest(cell)
        assert (cell.status.reason, cell.status.message) == ("CrashLoopBackOff", said[-1])
    assert said == ["a restart is owed: container app at 2026-01-01T12:00:16Z"] * 2


# --- 4. a container waiting out its back-off is Waiting, as Kubernetes' state.waiting -------


def test_a_stop_ends_the_wait_and_keeps_the_exit() -> None:
    """``desiredState: Stopped`` while a restart waits: Stopped, no reason, message or due
    time left, the exit kept as lastState (the start then starts it at once)."""
    finished = T0 + timedelta(seconds=1)
    previous = ran(start_time=T0, backoff_restarts=1)
    wait = plan(
        spec("always"), previous=previous, container=kept(), task=stopped_task(1, at=finished)
    ).status
    assert wait.state == ContainerState.WAITING
    cell = make_cell(app(restartPolicy="always")).model_copy(deep=True)
    cell.status.containers = [wait]
    [status] = stopped_statuses(cell, cell.spec.containers, at=T0 + timedelta(seconds=2))
    assert status.state == ContainerState.STOPPED
    assert (status.reason, status.message, status.restart_time) == (None, None, None)
    assert status.backoff_restarts is None  # the crash loop is over
    assert status.last_state == wait.last_state


def test_a_wait_stored_by_an_earlier_kukeond_is_read_as_its_exit() -> None:
    """A status written before ``Waiting`` (Failed, the exit in its own fields, the back-off
    in its message) decides the same wait, now written as Waiting (no new Exited Event)."""
    finished = T0 + timedelta(seconds=1)
    old = ContainerStatus.model_validate(
        {
            "id": "app",
            "name": "s_st_c_app",
            "image": "busybox",
            "state": "Failed",
            "exitCode": 1,
            "reason": "Error",
            "message": "exited with 1; back-off 10s restarting failed container=app, due "
            "2026-01-01T12:00:11Z",
            "startTime": T0.isoformat(),
            "finishTime": finished.isoformat(),
            "restartTime": (T0 - timedelta(minutes=1)).isoformat(),
            "restartCount": 1,
            "backoffRestarts": 1,
        }
    )
    task = stopped_task(1, at=finished)
    later = plan(
        spec("always"), previous=old, container=kept(), task=task, now=T0 + timedelta(seconds=5)
    )
    assert later.start is None
    assert [n.reason for n in later.notes] == ["BackOff"]
    status = later.status
    assert (status.state, status.reason) == (ContainerState.WAITING, "CrashLoopBackOff")
    assert status.restart_time == T0 + timedelta(seconds=11)
    assert status.last_state is not None
    assert (status.last_state.exit_code, status.last_state.finished_at) == (1, finished)
    assert later.wake_in == pytest.approx(6)


def test_a_container_that_stays_down_does_not_wait() -> None:
    """never, and on-failure past restartMaxRetries: Failed with its exit, no due time."""
    finished = T0 + timedelta(seconds=1)
    task = stopped_task(3, at=finished)
    for container, count in ((spec("never"), 0), (spec("on-failure", retries=2), 2)):
        previous = ran(start_time=T0, restart_count=count, restart_time=T0)
        ended = plan(container, previous=previous, container=kept(), task=task).status
        assert ended.state == ContainerState.FAILED
        assert (ended.exit_code, ended.finish_time, ended.restart_time) == (3, finished, None)
        assert ended.reason == "Error"
