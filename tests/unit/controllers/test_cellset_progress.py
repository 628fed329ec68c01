"""A rollout's progress deadline: when the set last moved, and a stalled rollout halted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from kukeon.api import Cell, CellSet, CellState, Kind, parse_resource
from kukeon.api.cellset import PROGRESS_DEADLINE_EXCEEDED
from kukeon.cli.cellsets import rollout_stalled
from kukeon.controllers.cellsetplan import Seen, SetCounts, SetPlan, halt, track_progress
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seen(
    *, updated: int = 1, available: int = 2, replicas: int = 3, complete: bool = False
) -> Seen:
    counts = SetCounts(replicas=replicas, ready=available, updated=updated, available=available)
    return Seen("new", 2, counts, since=T0, complete=complete)


def counts(*, updated: int = 1, available: int = 2, replicas: int = 3) -> SetCounts:
    return SetCounts(replicas=replicas, ready=available, updated=updated, available=available)


def test_no_move_keeps_the_time_of_the_last() -> None:
    later = T0 + timedelta(seconds=30)
    assert track_progress(seen(), "new", 2, counts(), later) == (T0, False)


@pytest.mark.parametrize(
    ("hash_", "generation", "after"),
    [
        ("newer", 2, counts()),  # a new template
        ("new", 3, counts()),  # a new generation (scale, undo)
        ("new", 2, counts(updated=2, replicas=4)),  # one more new cell
        ("new", 2, counts(available=3)),  # one more available
        ("new", 2, counts(replicas=2)),  # one old cell fewer
    ],
)
def test_any_progress_restarts_the_clock(hash_: str, generation: int, after: SetCounts) -> None:
    later = T0 + timedelta(seconds=100)
    assert track_progress(seen(), hash_, generation, after, later) == (later, True)


def test_a_set_that_was_complete_starts_its_clock_now() -> None:
    later = T0 + timedelta(seconds=100)
    assert track_progress(seen(complete=True), "new", 2, counts(), later) == (later, True)


def test_halt_creates_nothing_and_keeps_the_deletions() -> None:
    plan = SetPlan(2, ("o1",), counts(), rolling=True)
    halted = halt(plan)
    assert (halted.create, halted.delete) == (0, ("o1",))


# --- the controller over a fake registry ------------------------------------------------


class FakeRegistry:
    def __init__(self, cellset: CellSet) -> None:
        self.cellset = cellset
        self.cells: dict[str, Cell] = {}

    async def list(self, kind: Kind, *args: Any, **kwargs: Any) -> Any:
        items = [self.cellset] if kind == Kind.CELL_SET else list(self.cells.values())
        return type("Listed", (), {"items": items})()

    async def create(self, cell: Cell) -> Cell:
        cell = cell.model_copy(
            update={"metadata": cell.metadata.model_copy(update={"creation_timestamp": T0})}
        )
        self.cells[cell.metadata.name] = cell
        return cell

    async def delete(self, kind: Kind, key: tuple[str, ...]) -> None:
        self.cells.pop(key[-1], None)

    async def update_status(self, obj: CellSet) -> CellSet:
        self.cellset = obj
        return obj


def a_set(env: str, *, generation: int = 1) -> CellSet:
    doc = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "web", "generation": generation},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 30,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"id": "a", "image": "busybox", "env": [f"V={env}"]}]},
            },
        },
    }
    cellset = parse_resource(doc)
    assert isinstance(cellset, CellSet)
    return cellset


def set_state(registry: FakeRegistry, state: CellState, *, ready: bool) -> None:
    for name, cell in registry.cells.items():
        status = cell.status.model_copy(update={"state": state, "ready_at": T0 if ready else None})
        registry.cells[name] = cell.model_copy(update={"status": status})


def controller_on(registry: FakeRegistry, now: list[datetime], **kwargs: Any) -> CellSetController:
    """A controller whose monotonic clock follows ``now[0]`` (no step of the wall clock)."""
    return CellSetController(
        registry=cast(Registry, registry),
        clock=lambda: now[0],
        monotonic=lambda: (now[0] - T0).total_seconds(),
        **kwargs,
    )


def progressing(registry: FakeRegistry) -> tuple[str, str | None]:
    found = [c for c in registry.cellset.status.conditions if c.type == "Progressing"]
    return found[0].status, found[0].reason


async def test_a_stalled_rollout_stops_and_says_so() -> None:
    now = [T0]
    registry = FakeRegistry(a_set("1"))
    controller = controller_on(registry, now)
    await controller.run_pass()
    set_state(registry, CellState.READY, ready=True)
    await controller.run_pass()
    assert progressing(registry) == ("True", "CellSetAvailable")
    old = set(registry.cells)

    # A template whose cells never get Ready: one new cell (maxSurge 1), then nothing.
    status = registry.cellset.status
    registry.cellset = a_set("2", generation=2).model_copy(update={"status": status})
    await controller.run_pass()
    await controller.run_pass()
    assert len(registry.cells) == 3
    assert rollout_stalled(registry.cellset) is None
    now[0] = T0 + timedelta(seconds=31)
    await controller.run_pass()
    assert progressing(registry) == ("False", PROGRESS_DEADLINE_EXCEEDED)
    assert "no progress for 30s" in (rollout_stalled(registry.cellset) or "")
    # The stuck new cell ends (it never was Ready: kept); nothing new is made, the old stay.
    new = (set(registry.cells) - old).pop()
    registry.cells[new] = registry.cells[new].model_copy(
        update={"status": registry.cells[new].status.model_copy(update={"state": CellState.FAILED})}
    )
    now[0] = T0 + timedelta(seconds=60)
    await controller.run_pass()
    assert set(registry.cells) == old | {new}
    assert progressing(registry) == ("False", PROGRESS_DEADLINE_EXCEEDED)

    # A new template (an undo to the first one) moves again.
    status = registry.cellset.status
    registry.cellset = a_set("1", generation=3).model_copy(update={"status": status})
    await controller.run_pass()
    assert progressing(registry)[0] == "True"


async def test_an_old_cell_that_takes_its_grace_to_stop_is_no_stall() -> None:
    # maxSurge 1, maxUnavailable 0: the old cell being deleted holds the surge until it is
    # gone, which may take its whole grace (up to an hour): the rollout waits on its own
    # step, and its deadline runs again only once the cell is gone.
    now = [T0]
    registry = FakeRegistry(a_set("1"))
    registry_delete = registry.delete
    leaving: dict[str, Cell] = {}

    async def slow_delete(kind: Kind, key: tuple[str, ...]) -> None:
        cell = registry.cells[key[-1]]
        marked = cell.metadata.model_copy(update={"deletion_timestamp": now[0]})
        registry.cells[key[-1]] = leaving[key[-1]] = cell.model_copy(update={"metadata": marked})

    controller = controller_on(registry, now)
    await controller.run_pass()
    set_state(registry, CellState.READY, ready=True)
    await controller.run_pass()
    registry.delete = slow_delete  # type: ignore[method-assign]
    status = registry.cellset.status
    registry.cellset = a_set("2", generation=2).model_copy(update={"status": status})
    await controller.run_pass()  # one new cell
    set_state(registry, CellState.READY, ready=True)
    await controller.run_pass()  # an old one goes, slowly
    assert len(leaving) == 1
    now[0] = T0 + timedelta(seconds=10)
    await controller.run_pass()  # the old cell's leaving was counted as a move here
    now[0] = T0 + timedelta(seconds=600)  # far past the 30 s deadline, still stopping
    await controller.run_pass()
    assert progressing(registry)[0] == "True"
    for name in leaving:
        await registry_delete(Kind.CELL, ("r", "s", "st", name))
    await controller.run_pass()  # the next new cell is made
    assert progressing(registry)[0] == "True"
