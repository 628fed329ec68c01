"""A container's restart back-off under a wall clock that steps (NTP, a resumed VM): the
wait a process planned is also counted on its monotonic clock (``restartwaits``).

Before, the due time (the exit's time plus the pause, status) was compared with the wall
clock alone: a step forward made every back-off under way due at once, each crash-looping
container restarted at the step; a step back waited the whole pause again from the step.
"""

from __future__ import annotations

from datetime import timedelta

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
    clocks: Clocks, waits: RestartWaits | None, previous: ContainerStatus, *, backoff: int = 10
) -> ContainerPlan:
    """A pass over a container (restartBackoffSeconds ``backoff``) whose task exited at T0."""
    return plan_container(
        ContainerInputs(
            spec=spec("always", backoff=backoff),
            name=NAME,
            root=True,
            digest="d1",
            restarted_at="",
            previous=previous,
            container=kept(),
            task=stopped_task(1, at=T0),
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
