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
from kukeon.framework import HandlerContext, TemporaryError
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
        "exited with 2; back-off 40s restarting failed container=app, due 2026-01-01T12:00:41Z"
    )
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
        "exited with 0; back-off 10s restarting container=app, due 2026-01-01T12:00:11Z"
    )


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
    assert status.state == ContainerState.READY
    assert (status.pid, status.start_time, status.restart_time) == (4242, T0, T0)
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
        if result.start is None:
            assert result.status.start_time == result.status.finish_time == T0, policy
        else:
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
    with pytest.raises(TemporaryError):  # the next restart waits its back-off
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
    exited = await _exited(rig, cell)
    assert exited.finish_time == T0 + timedelta(seconds=1)
    assert exited.start_time == T0


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
    assert exited.start_time == T0 + timedelta(seconds=6)
    assert exited.finish_time == T0 + timedelta(seconds=7)
    assert exited.message is not None
    assert "back-off 10s" in exited.message


async def test_a_cell_waiting_for_a_restart_says_when_the_same_at_every_pass(rig: Rig) -> None:
    """The cell's own message (reason RestartBackoff) names the container and the due
    time, not a countdown: a later pass of the same wait says the very same."""
    cell = await rig.reconcile(make_cell(app(restartPolicy="always", restartBackoffSeconds=5)))
    rig.world.exit(
        CID, 1, at=T0 + timedelta(seconds=10, milliseconds=200), status=TaskStatus.STOPPED
    )
    said = []
    for seconds in (11, 13):
        rig.at(seconds)
        with pytest.raises(TemporaryError) as waiting:
            await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
        assert waiting.value.reason == "RestartBackoff"
        said.append(str(waiting.value))
        cell = rig.latest(cell)
    assert said == ["a restart is owed: container app at 2026-01-01T12:00:16Z"] * 2
