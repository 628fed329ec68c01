"""The set controller tells of what it does on the set, as Kubernetes' ReplicaSet
controller does: `SuccessfulCreate` and `SuccessfulDelete` for each of its cells,
`FailedCreate` (a Warning) once when the realm's quota starts refusing them."""

from __future__ import annotations

from typing import cast

from kukeon.api import AnyResource, Cell, CellSet, EventType, Kind, parse_resource
from kukeon.controllers.cellsets import CellSetController
from kukeon.framework import EventRecorder
from kukeon.store import NotFound, Registry
from tests.unit.controllers.test_cellset_quota import QuotaRegistry, _failure
from tests.unit.controllers.test_cellset_writes import make_set


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, EventType]] = []

    def event(
        self, obj: AnyResource, reason: str, message: str, *, type: EventType = EventType.NORMAL
    ) -> None:
        self.events.append((obj.kind, obj.metadata.name, reason, message, type))


class Cells(QuotaRegistry):
    """Creates up to ``room`` cells; deletes what it holds (NotFound otherwise)."""

    async def delete(self, kind: Kind, key: tuple[str, ...]) -> None:
        names = [c.metadata.name for c in self.created]
        if key[-1] not in names:
            raise NotFound(f"cell {key[-1]} not found")
        del self.created[names.index(key[-1])]


def _controller(registry: Cells) -> tuple[CellSetController, Recorder]:
    recorder = Recorder()
    controller = CellSetController(
        registry=cast(Registry, registry), recorder=cast(EventRecorder, recorder)
    )
    return controller, recorder


def _cells(cellset: CellSet, registry: Cells) -> list[Cell]:
    return [
        cast(Cell, parse_resource(cellset.cell_document(c.metadata.name, cellset.template_hash())))
        for c in registry.created
    ]


async def test_each_cell_created_and_deleted_is_an_event_on_the_set() -> None:
    registry = Cells(room=10)
    controller, recorder = _controller(registry)
    cellset = make_set(3)
    await controller.reconcile(cellset, [])
    created = sorted(c.metadata.name for c in registry.created)
    assert sorted(recorder.events) == [
        ("CellSet", "web", "SuccessfulCreate", f"created cell {name}", EventType.NORMAL)
        for name in created
    ]

    recorder.events.clear()
    cells = _cells(cellset, registry)
    await controller.reconcile(make_set(1), cells)  # scaled down: two go
    kept = {c.metadata.name for c in registry.created}
    assert sorted(recorder.events) == [
        ("CellSet", "web", "SuccessfulDelete", f"deleted cell {name}", EventType.NORMAL)
        for name in created
        if name not in kept
    ]


async def test_a_cell_already_gone_is_no_event() -> None:
    registry = Cells(room=10)
    controller, recorder = _controller(registry)
    cellset = make_set(2)
    await controller.reconcile(cellset, [])
    cells = _cells(cellset, registry)
    registry.created.clear()  # deleted behind the controller's back
    recorder.events.clear()
    await controller.reconcile(make_set(0), cells)
    assert recorder.events == []


async def test_a_refused_create_is_one_warning_while_the_quota_refuses() -> None:
    registry = Cells(room=1)
    controller, recorder = _controller(registry)
    cellset = make_set(3)
    await controller.reconcile(cellset, [])
    warnings = [e for e in recorder.events if e[2] == "FailedCreate"]
    assert len(warnings) == 1
    assert warnings[0][4] == EventType.WARNING
    assert "quota of realm" in warnings[0][3]

    # The next pass, its status already saying so, does not say it again.
    failing = cellset.model_copy(update={"status": registry.status})
    assert isinstance(failing, CellSet)
    assert _failure(failing.status) is not None
    recorder.events.clear()
    await controller.reconcile(failing, _cells(cellset, registry))
    assert [e for e in recorder.events if e[2] == "FailedCreate"] == []


async def test_without_a_recorder_the_set_still_works() -> None:
    registry = Cells(room=10)
    controller = CellSetController(registry=cast(Registry, registry))
    await controller.reconcile(make_set(2), [])
    assert len(registry.created) == 2
    assert controller.recorder is None
