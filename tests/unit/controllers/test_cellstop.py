"""A stop is the user's, not an exit of the container's own: the start after it starts
every container that ran or waited for a restart at once, with its crash loop over."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kukeon.api import ContainerSpec, ContainerState, ContainerStatus, EventReason
from kukeon.controllers.cellplan import StartTask
from kukeon.controllers.cellstop import stopped_statuses

from .test_cellplan import T0, cell, kept, plan, ran, spec


def stop_then_start(container_spec: ContainerSpec, status: ContainerStatus) -> ContainerStatus:
    """The container's status after a stop at T0, and the plan of the start at T0 + 1 s
    (the stop deleted its task): it must start at once, no exit seen."""
    subject = cell(desired="Stopped", state="Ready", containers=[status])
    specs = [container_spec, *subject.spec.containers[1:]]
    stopped = stopped_statuses(subject, specs, at=T0)[0]
    assert stopped.state == ContainerState.STOPPED
    assert (stopped.exit_code, stopped.pid) == (None, None)
    # A second stop pass (desiredState is still Stopped) changes nothing more.
    again = cell(desired="Stopped", state="Stopped", containers=[stopped])
    assert stopped_statuses(again, specs, at=T0 + timedelta(seconds=5))[0] == stopped
    start = plan(
        container_spec, previous=stopped, container=kept(), task=None, now=T0 + timedelta(seconds=1)
    )
    assert start.start == StartTask(restart=False), start
    assert EventReason.BACK_OFF not in [note.reason for note in start.notes]
    assert start.status.restart_count == status.restart_count  # a start, not a restart
    return stopped


@pytest.mark.parametrize(
    "container_spec", [spec("always"), spec("on-failure", retries=1)], ids=["always", "on-failure"]
)
def test_a_restarted_container_stopped_while_it_runs_starts_again(
    container_spec: ContainerSpec,
) -> None:
    """Its status still holds the exit before its restart: a start read it back as a new
    exit (a back-off; never a start for on-failure at its last retry)."""
    running = ran(
        restart_count=1,
        backoff_restarts=1,
        exit_code=3,
        reason=None,
        finish_time=T0 - timedelta(seconds=30),
        start_time=T0 - timedelta(seconds=29),
    )
    stop_then_start(container_spec, running)


def test_a_container_waiting_for_its_restart_starts_at_once_its_loop_over() -> None:
    """Stopped in a 300 s back-off: the start does not wait it out (kukectl start would
    time out), and the crash loop starts over, as docker's start resets it."""
    waiting = ran(
        state=ContainerState.FAILED,
        pid=None,
        exit_code=3,
        reason="Error",
        message="exited with 3 (boom); restarting in 300.0s",
        restart_count=6,
        backoff_restarts=6,
        start_time=T0 - timedelta(seconds=20),
        finish_time=T0 - timedelta(seconds=20),
    )
    stopped = stop_then_start(spec("always"), waiting)
    assert stopped.backoff_restarts is None
    assert stopped.message is None  # no restart is coming while it is stopped
    assert stopped.last_state is not None
    assert (stopped.last_state.exit_code, stopped.last_state.reason) == (3, "Error")
    assert stopped.last_state.finished_at == waiting.finish_time


@pytest.mark.parametrize(
    "container_spec", [spec("never"), spec("on-failure", retries=2)], ids=["never", "gave-up"]
)
def test_a_container_ended_for_good_keeps_its_exit(container_spec: ContainerSpec) -> None:
    ended = ran(state=ContainerState.FAILED, pid=None, exit_code=3, reason="Error", restart_count=2)
    subject = cell(desired="Stopped", state="Error", containers=[ended])
    specs = [container_spec, *subject.spec.containers[1:]]
    assert stopped_statuses(subject, specs, at=T0)[0] == ended
