"""A set's ownership of its cells: released when it is deleted with Orphan, adopted back by a
set whose selector matches them (controllers.cellsetowners), over a fake registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from kukeon.api import CELLSET_LABEL, TEMPLATE_HASH_LABEL, Cell, CellSet, Kind, parse_resource
from kukeon.api.cellset import ORPHAN_FINALIZER
from kukeon.controllers.cellsetowners import adoptable_by, is_adoptable, stack_of
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def a_set(*, deleting: bool = False, app: str = "web") -> CellSet:
    metadata: dict[str, Any] = {"name": "web"}
    if deleting:
        metadata.update(deletionTimestamp=T0.isoformat(), finalizers=[ORPHAN_FINALIZER])
    cellset = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": metadata,
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": app}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{"id": "a", "image": "busybox"}]},
                },
            },
        }
    )
    assert isinstance(cellset, CellSet)
    return cellset


def a_cell(name: str, labels: dict[str, str]) -> Cell:
    cell = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name, "labels": labels, "creationTimestamp": T0.isoformat()},
            "spec": {"containers": [{"id": "a", "image": "busybox"}]},
        }
    )
    assert isinstance(cell, Cell)
    return cell


class FakeRegistry:
    def __init__(self, cellset: CellSet | None, cells: list[Cell]) -> None:
        self.cellset = cellset
        self.cells = {c.metadata.name: c for c in cells}
        self.created: list[str] = []
        self.deleted: list[str] = []

    async def list(self, kind: Kind, *args: Any, **kwargs: Any) -> Any:
        if kind == Kind.CELL_SET:
            items: list[Any] = [self.cellset] if self.cellset is not None else []
        else:
            items = list(self.cells.values())
        return type("Listed", (), {"items": items})()

    async def update(self, cell: Cell) -> Cell:
        self.cells[cell.metadata.name] = cell
        return cell

    async def remove_finalizer(self, kind: Kind, key: tuple[str, ...], name: str) -> None:
        assert self.cellset is not None
        assert name in self.cellset.metadata.finalizers
        self.cellset = None  # marked, and its last finalizer gone: it goes

    async def create(self, cell: Cell) -> Cell:
        self.created.append(cell.metadata.name)
        return cell

    async def delete(self, kind: Kind, key: tuple[str, ...]) -> None:
        self.deleted.append(key[-1])

    async def update_status(self, obj: CellSet) -> CellSet:
        return obj


def owned(name: str) -> Cell:
    return a_cell(name, {"app": "web", CELLSET_LABEL: "web", TEMPLATE_HASH_LABEL: "abc"})


async def test_an_orphaning_deletion_releases_the_cells_and_lets_the_set_go() -> None:
    registry = FakeRegistry(a_set(deleting=True), [owned("web-abc-1"), owned("web-abc-2")])
    await CellSetController(registry=cast(Registry, registry)).run_pass()
    assert registry.cellset is None
    assert registry.deleted == []  # not the cascade
    for cell in registry.cells.values():
        assert CELLSET_LABEL not in cell.metadata.labels
        assert cell.metadata.labels[TEMPLATE_HASH_LABEL] == "abc"


async def test_a_plain_deletion_still_cascades() -> None:
    cellset = a_set(deleting=True)
    cellset = cellset.model_copy(
        update={"metadata": cellset.metadata.model_copy(update={"finalizers": ["other"]})}
    )
    registry = FakeRegistry(cellset, [owned("web-abc-1")])
    await CellSetController(registry=cast(Registry, registry)).run_pass()
    assert registry.deleted == ["web-abc-1"]


async def test_a_matching_set_adopts_orphans_before_it_counts() -> None:
    orphans = [a_cell(f"web-abc-{i}", {"app": "web", TEMPLATE_HASH_LABEL: "abc"}) for i in (1, 2)]
    registry = FakeRegistry(a_set(), orphans)
    controller = CellSetController(registry=cast(Registry, registry))
    await controller.run_pass()
    assert all(c.metadata.labels[CELLSET_LABEL] == "web" for c in registry.cells.values())
    assert registry.created == []  # counted from the next pass, not replaced


def test_only_unowned_cells_a_set_made_match() -> None:
    mine = a_cell("x", {"app": "web", TEMPLATE_HASH_LABEL: "abc"})
    hand_made = a_cell("y", {"app": "web"})
    assert is_adoptable(mine)
    assert not is_adoptable(hand_made)
    assert not is_adoptable(owned("z"))
    unowned = {stack_of(mine): [mine]}
    assert adoptable_by(a_set(), unowned) == [mine]
    assert adoptable_by(a_set(app="api"), unowned) == []
