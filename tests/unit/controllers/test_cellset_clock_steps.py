"""The set controller's progress deadline, replacement back-off and minReadySeconds under
a wall clock that steps (NTP, a resumed VM): all are counted on the leader's monotonic
clock.

Before, both were now minus a time on the wall clock: the deadline from the `Progressing`
condition's `lastUpdateTime`, the back-off's hold from its due time and its reset from the
cell's `readyAt`. A step forward halted a rollout at once, released a hold and ended the
back-off; a step back held each for as long as the step. A cell's availability was now
minus its `readyAt`: a step forward made every cell just Ready available (a rollout deleted
old cells at once), a step back none for as long as the step.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from kukeon.api import Cell, CellState
from kukeon.api.cellset import PROGRESS_DEADLINE_EXCEEDED
from kukeon.controllers.cellsetbackoff import BackoffPolicy
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry
from tests.unit.controllers.test_cellset_progress import (
    FakeRegistry,
    a_set,
    progressing,
    set_state,
)
from tests.unit.controllers.test_scheduling_pass import Clock

DAY = 86400.0
POLICY = BackoffPolicy(initial=2.0, cap=8.0, reset_after=10.0)


class ClockedRegistry(FakeRegistry):
    """Cells created at the wall clock's time, as the API server stamps them."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(a_set("1"))
        self.clock = clock

    async def create(self, cell: Cell) -> Cell:
        created = await super().create(cell)
        metadata = created.metadata.model_copy(update={"creation_timestamp": self.clock.now})
        self.cells[cell.metadata.name] = created = created.model_copy(update={"metadata": metadata})
        return created


def controller(registry: FakeRegistry, clock: Clock) -> CellSetController:
    return CellSetController(
        registry=cast(Registry, registry),
        clock=clock,
        monotonic=clock.monotonic,
        backoff_policy=POLICY,
    )


async def stalled_rollout(clock: Clock) -> tuple[ClockedRegistry, CellSetController]:
    """A set of 2 at its first template, complete, then a second template whose one new
    cell (maxSurge 1) never gets Ready: the rollout has just stopped progressing."""
    registry = ClockedRegistry(clock)
    leader = controller(registry, clock)
    await leader.run_pass()
    set_state(registry, CellState.READY, ready=True)
    await leader.run_pass()
    assert progressing(registry) == ("True", "CellSetAvailable")
    status = registry.cellset.status
    registry.cellset = a_set("2", generation=2).model_copy(update={"status": status})
    await leader.run_pass()
    await leader.run_pass()
    assert len(registry.cells) == 3
    assert progressing(registry) == ("True", "RollingUpdate")
    return registry, leader


async def test_a_forward_step_does_not_halt_a_rollout_early() -> None:
    clock = Clock()
    registry, leader = await stalled_rollout(clock)
    clock.step(3600)
    await leader.run_pass()
    assert progressing(registry) == ("True", "RollingUpdate"), "halted at the clock's jump"
    clock.now += timedelta(seconds=29)
    await leader.run_pass()
    assert progressing(registry) == ("True", "RollingUpdate")
    clock.now += timedelta(seconds=1)
    await leader.run_pass()
    assert progressing(registry) == ("False", PROGRESS_DEADLINE_EXCEEDED)


async def test_a_backward_step_does_not_hold_the_deadline() -> None:
    clock = Clock()
    registry, leader = await stalled_rollout(clock)
    clock.step(-DAY)
    clock.now += timedelta(seconds=30)
    await leader.run_pass()
    assert progressing(registry) == ("False", PROGRESS_DEADLINE_EXCEEDED), "held by the step"


async def test_a_new_leader_counts_a_stall_afresh_and_keeps_a_halt() -> None:
    """A failover delays the deadline, never hastens it; a halt a leader declared stays
    (counting afresh, the new leader would resume the rollout for another deadline)."""
    clock = Clock()
    registry, _ = await stalled_rollout(clock)
    clock.now += timedelta(seconds=20)
    successor = controller(registry, clock)
    await successor.run_pass()
    clock.now += timedelta(
        seconds=20
    )  # 40 s since the rollout stopped, 20 s since the successor saw it
    await successor.run_pass()
    assert progressing(registry) == ("True", "RollingUpdate")
    clock.now += timedelta(seconds=10)
    await successor.run_pass()
    assert progressing(registry) == ("False", PROGRESS_DEADLINE_EXCEEDED)
    third = controller(registry, clock)
    await third.run_pass()
    assert progressing(registry) == ("False", PROGRESS_DEADLINE_EXCEEDED)
    assert len(registry.cells) == 3, "the halted rollout made a cell"


def all_cells(registry: FakeRegistry, state: CellState, clock: Clock) -> None:
    """Every cell in ``state``, its ``readyAt`` now (as its node writes it, wall clock)."""
    for name, cell in registry.cells.items():
        status = cell.status.model_copy(update={"state": state, "ready_at": clock.now})
        registry.cells[name] = cell.model_copy(update={"status": status})


def end_all(registry: FakeRegistry, clock: Clock) -> None:
    """Every cell ends after it was Ready (replaced, and backed off)."""
    all_cells(registry, CellState.ERROR, clock)


async def backing_off(clock: Clock) -> tuple[ClockedRegistry, CellSetController]:
    """Both cells of a set of 2 ended after they were Ready: deleted, replacements held 2 s."""
    registry = ClockedRegistry(clock)
    leader = controller(registry, clock)
    await leader.run_pass()
    assert len(registry.cells) == 2
    end_all(registry, clock)
    clock.now += timedelta(seconds=1)
    await leader.run_pass()
    assert registry.cells == {}
    return registry, leader


async def test_a_forward_step_does_not_release_a_held_replacement() -> None:
    clock = Clock()
    registry, leader = await backing_off(clock)
    clock.step(3600)
    await leader.run_pass()
    assert registry.cells == {}, "replaced at the clock's jump"
    clock.now += timedelta(seconds=2)
    await leader.run_pass()
    assert len(registry.cells) == 2


async def test_a_backward_step_does_not_hold_a_replacement() -> None:
    clock = Clock()
    registry, leader = await backing_off(clock)
    clock.step(-DAY)
    clock.now += timedelta(seconds=2)
    await leader.run_pass()
    assert len(registry.cells) == 2, "held for as long as the step"


async def test_a_forward_step_does_not_end_the_back_off() -> None:
    """The back-off ends once a replacement has been Ready 10 s (reset_after), counted
    from when the leader saw it Ready: a step is no time Ready."""
    clock = Clock()
    registry, leader = await backing_off(clock)
    clock.now += timedelta(seconds=2)
    await leader.run_pass()
    all_cells(registry, CellState.READY, clock)  # Ready now, as its node says
    await leader.run_pass()
    clock.step(3600)
    await leader.run_pass()
    # One cell ends: the third failure in a row is held 4 s; after a reset, the first
    # replacement would be made at once.
    name, cell = next(iter(registry.cells.items()))
    ended = cell.status.model_copy(update={"state": CellState.ERROR})
    registry.cells[name] = cell.model_copy(update={"status": ended})
    clock.now += timedelta(seconds=1)
    await leader.run_pass()
    assert len(registry.cells) == 1, "the back-off ended at the clock's jump"
    clock.now += timedelta(seconds=4)
    await leader.run_pass()
    assert len(registry.cells) == 2


def with_min_ready(registry: FakeRegistry, seconds: int) -> None:
    cellset = registry.cellset
    spec = cellset.spec.model_copy(update={"min_ready_seconds": seconds})
    registry.cellset = cellset.model_copy(update={"spec": spec})


async def just_ready(clock: Clock) -> tuple[ClockedRegistry, CellSetController]:
    """A set of 2 with minReadySeconds 20 whose cells have just become Ready."""
    registry = ClockedRegistry(clock)
    with_min_ready(registry, 20)
    leader = controller(registry, clock)
    await leader.run_pass()
    all_cells(registry, CellState.READY, clock)
    await leader.run_pass()
    assert registry.cellset.status.available_replicas == 0
    return registry, leader


async def test_a_forward_step_makes_no_cell_available_early() -> None:
    clock = Clock()
    registry, leader = await just_ready(clock)
    clock.step(3600)
    await leader.run_pass()
    assert registry.cellset.status.available_replicas == 0, "available at the clock's jump"
    clock.now += timedelta(seconds=19)
    await leader.run_pass()
    assert registry.cellset.status.available_replicas == 0
    clock.now += timedelta(seconds=1)
    await leader.run_pass()
    assert registry.cellset.status.available_replicas == 2


async def test_a_backward_step_does_not_hold_availability() -> None:
    clock = Clock()
    registry, leader = await just_ready(clock)
    clock.step(-DAY)
    clock.now += timedelta(seconds=20)
    await leader.run_pass()
    assert registry.cellset.status.available_replicas == 2, "held for as long as the step"


async def test_a_forward_step_deletes_no_old_cell_before_the_new_one_is_available() -> None:
    """A rollout (maxUnavailable 0) deletes an old cell once a new one has been Ready for
    minReadySeconds: a step forward is no time Ready."""
    clock = Clock()
    registry, leader = await just_ready(clock)
    clock.now += timedelta(seconds=20)
    await leader.run_pass()
    old = set(registry.cells)
    status, spec = registry.cellset.status, registry.cellset.spec
    new_template = a_set("2", generation=2).spec.template
    registry.cellset = registry.cellset.model_copy(
        update={"spec": spec.model_copy(update={"template": new_template}), "status": status}
    )
    registry.cellset.metadata.generation = 2
    await leader.run_pass()
    (new,) = set(registry.cells) - old
    cell = registry.cells[new]
    ready = cell.status.model_copy(update={"state": CellState.READY, "ready_at": clock.now})
    registry.cells[new] = cell.model_copy(update={"status": ready})
    await leader.run_pass()
    clock.step(3600)
    await leader.run_pass()
    assert old <= set(registry.cells), "an old cell deleted at the clock's jump"
    clock.now += timedelta(seconds=20)
    await leader.run_pass()
    assert not old <= set(registry.cells)


async def test_a_new_leader_keeps_what_was_available() -> None:
    """A restarted kukeond or a new leader credits the wall-clock age it reads at its first
    look (up to minReadySeconds): a set available before stays so."""
    clock = Clock()
    registry, _ = await just_ready(clock)
    clock.now += timedelta(seconds=25)
    successor = controller(registry, clock)
    await successor.run_pass()
    assert registry.cellset.status.available_replicas == 2
