"""A container's restart back-off under a wall clock that steps (NTP, a resumed VM): the
wait a process planned is also counted on its monotonic clock (``restartwaits``).

Before, the due time (the exit's time plus the pause, status) was compared with the wall
clock alone: a step forward made every back-off under way due at once, each crash-looping
container restarted at the step; a step back waited the whole pause again from the step.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kukeon.api import ContainerStatus
from kukeon.controllers.cellplan import ContainerInputs, ContainerPlan, StartTask, plan_container
from kukeon.controllers.restartwaits import KEEP_SECONDS, RestartWaits
from tests.unit.controllers.test_cellplan import NAME, T0, kept, ran, spec, stopped_task

CELL = ("r", "s", "st", "c")


class Clocks:
    """The wall clock and a monotonic one that follows it except for ``step``s."""

    def __init__(self) -> None:
        self.now, self.ticks = T0, 0.0

    def monotonic(self) -> float:
        return self.ticks

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.ticks += seconds

    def step(self, seconds: float) -> None:
        """The wall clock jumps; no time passes."""
        self.now += timedelta(seconds=seconds)


def stored(status: ContainerStatus) -> ContainerStatus:
    return ContainerStatus.model_validate(status.model_dump(mode="json", by_alias=True))


def a_pass(
    clocks: Clocks,
    waits: RestartWaits | None,
    previous: ContainerStatus,
    *,
    backoff: int | None = 10,
    exit_at: datetime = T0,
) -> ContainerPlan:
    """A pass over a container (restartBackoffSeconds ``backoff``; None: CrashLoopBackOff)
    whose task exited at ``exit_at``, as containerd timed it (the wall clock)."""
    return plan_container(
        ContainerInputs(
            spec=spec("always", backoff=backoff),
            name=NAME,
            root=True,
            digest="d1",
            restarted_at="",
            previous=previous,
            container=kept(),
            task=stopped_task(1, at=exit_at),
            now=clocks.now,
            restart_wait=None if waits is None else waits.of(CELL, "app"),
        )
    )


def waiting(clocks: Clocks, waits: RestartWaits | None) -> ContainerPlan:
    first = a_pass(clocks, waits, ran(restart_count=1))
    assert first.start is None
    assert first.wake_in == 10
    return first


def test_a_forward_step_restarts_nothing_before_its_pause() -> None:
    clocks = Clocks()
    waits = RestartWaits(clocks.monotonic)
    first = waiting(clocks, waits)
    clocks.wait(3)
    clocks.step(3600)
    stepped = a_pass(clocks, waits, stored(first.status))
    assert stepped.start is None, "restarted at the clock's jump"
    assert stepped.wake_in == 7
    assert stepped.restart_at == clocks.now + timedelta(seconds=7)
    clocks.wait(6)
    again = a_pass(clocks, waits, stored(stepped.status))
    assert again.start is None
    assert again.status == stored(stepped.status), "the moved due time is written once"
    clocks.wait(1)
    assert a_pass(clocks, waits, stored(again.status)).start == StartTask(restart=True)


def test_a_backward_step_waits_the_pause_once() -> None:
    """``_due``'s slack alone waited the whole pause again from the step: 5 s + 10 s."""
    clocks = Clocks()
    waits = RestartWaits(clocks.monotonic)
    first = waiting(clocks, waits)
    clocks.wait(5)
    clocks.step(-86400)
    stepped = a_pass(clocks, waits, stored(first.status))
    assert stepped.start is None
    assert stepped.wake_in == 5
    clocks.wait(5)
    assert a_pass(clocks, waits, stored(stepped.status)).start == StartTask(restart=True)


def test_without_a_step_the_due_time_is_the_wall_clocks() -> None:
    clocks = Clocks()
    waits = RestartWaits(clocks.monotonic)
    first = waiting(clocks, waits)
    clocks.wait(4)
    again = a_pass(clocks, waits, stored(first.status))
    assert again.restart_at == first.restart_at == T0 + timedelta(seconds=10)
    assert again.wake_in == 6


def test_another_pause_is_another_wait() -> None:
    """restartBackoffSeconds changed during the wait: the new pause from the exit."""
    clocks = Clocks()
    waits = RestartWaits(clocks.monotonic)
    first = waiting(clocks, waits)
    clocks.wait(2)
    longer = a_pass(clocks, waits, stored(first.status), backoff=30)
    assert longer.wake_in == 28


def test_a_new_process_goes_by_the_status() -> None:
    """A kukeond restarted after the step knows no count: the wall clock decides (said in
    restartwaits' docstring)."""
    clocks = Clocks()
    first = waiting(clocks, RestartWaits(clocks.monotonic))
    clocks.step(3600)
    fresh = RestartWaits(clocks.monotonic)
    assert a_pass(clocks, fresh, stored(first.status)).start == StartTask(restart=True)


def test_an_ended_wait_is_dropped_when_another_starts() -> None:
    """Nothing else removes a deleted cell's waits."""
    clocks = Clocks()
    waits = RestartWaits(clocks.monotonic)
    waiting(clocks, waits)
    clocks.wait(10 + KEEP_SECONDS)
    waits.left((("r", "s", "st", "other"), "app"), "its exit", 10.0)
    assert len(waits) == 1


def a_crash(
    clocks: Clocks, waits: RestartWaits, previous: ContainerStatus, exit_at: datetime
) -> ContainerPlan:
    """A CrashLoopBackOff container (no restartBackoffSeconds) that exited at ``exit_at``."""
    return a_pass(clocks, waits, previous, backoff=None, exit_at=exit_at)


def restarted_in_a_loop(clocks: Clocks, waits: RestartWaits) -> ContainerPlan:
    """The third restart of a loop (a 20 s pause, 40 s next) made by this process now."""
    crashing = ran(restart_count=2, backoff_restarts=2, start_time=clocks.now)
    clocks.wait(5)
    exit_at = clocks.now
    held = a_crash(clocks, waits, crashing, exit_at)
    assert held.start is None
    assert held.wake_in == 20
    clocks.wait(20)
    again = a_crash(clocks, waits, stored(held.status), exit_at)
    assert again.start == StartTask(restart=True)
    assert again.status.backoff_restarts == 3
    return again


def test_a_forward_step_during_a_short_run_does_not_end_the_crash_loop() -> None:
    """A run of 10 minutes ends a crash loop (the next restart at once, the back-off from
    its start); a run of 5 s across a step of an hour is 5 s."""
    clocks = Clocks()
    waits = RestartWaits(clocks.monotonic)
    running = restarted_in_a_loop(clocks, waits)
    clocks.step(3600)
    clocks.wait(5)
    exited = a_crash(clocks, waits, stored(running.status), clocks.now)
    assert exited.start is None, "the loop ended at the clock's jump: restarted at once"
    assert exited.wake_in == 40


def test_a_long_run_across_a_backward_step_ends_the_crash_loop() -> None:
    clocks = Clocks()
    waits = RestartWaits(clocks.monotonic)
    running = restarted_in_a_loop(clocks, waits)
    clocks.step(-3600)
    clocks.wait(11 * 60)
    exited = a_crash(clocks, waits, stored(running.status), clocks.now)
    assert exited.start == StartTask(restart=True)
    assert exited.status.backoff_restarts == 1


def test_a_short_run_without_a_step_goes_on_with_the_loop() -> None:
    clocks = Clocks()
    waits = RestartWaits(clocks.monotonic)
    running = restarted_in_a_loop(clocks, waits)
    clocks.wait(5)
    exited = a_crash(clocks, waits, stored(running.status), clocks.now)
    assert exited.wake_in == 40
    assert exited.restart_at == clocks.now + timedelta(seconds=40)
