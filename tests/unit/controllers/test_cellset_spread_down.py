"""A scale-down keeps a set spread: the set controller counts each cell's spread domain
(its node, or its node's value of `spec.spread.topologyKey`) and takes from the domains
holding the most, whatever order the cells were placed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from kukeon.api import Cell, CellSet, CellState, Kind, Node, key_of
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry

from .hostfakes import ScopedStore
from .test_cellset_progress import a_set

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def zoned_set(replicas: int, spread: dict[str, Any] | None) -> CellSet:
    cellset = a_set("1")
    return cellset.model_copy(
        update={
            "spec": cellset.spec.model_copy(
                update={"replicas": replicas, "spread": type(cellset.spec.spread)(**(spread or {}))}
            )
        }
    )


def node(name: str, zone: str) -> Node:
    return Node.model_validate(
        {"metadata": {"name": name, "labels": {"zone": zone}}, "status": {"state": "Ready"}}
    )


def cells_of(store: ScopedStore) -> list[Cell]:
    return [c for (k, _), c in store.objects.items() if k == Kind.CELL and isinstance(c, Cell)]


async def placed(store: ScopedStore, nodes: list[str]) -> None:
    """The set's cells Ready on ``nodes``, the first cell (by name) the oldest."""
    for age, (cell, name) in enumerate(zip(sorted(cells_of(store), key=_name), nodes, strict=True)):
        store.objects[(Kind.CELL, key_of(cell))] = cell.model_copy(
            update={
                "metadata": cell.metadata.model_copy(
                    update={"creation_timestamp": T0 + timedelta(seconds=age)}
                ),
                "spec": cell.spec.model_copy(update={"node_name": name}),
                "status": cell.status.model_copy(update={"state": CellState.READY, "ready_at": T0}),
            },
            deep=True,
        )


def _name(cell: Cell) -> str:
    return cell.metadata.name


async def scaled_down(spread: dict[str, Any] | None, nodes: list[str], to: int) -> list[str]:
    """The nodes the set's cells are left on after a scale-down to ``to``."""
    store = ScopedStore()
    for name, zone in {"n1": "a", "n2": "a", "n3": "b"}.items():
        await store.create(node(name, zone))
    cellset = await store.create(zoned_set(len(nodes), spread))
    controller = CellSetController(registry=cast(Registry, store))
    await controller.run_pass()
    await placed(store, nodes)
    stored = store.objects[(Kind.CELL_SET, key_of(cellset))]
    assert isinstance(stored, CellSet)
    await store.update(
        stored.model_copy(update={"spec": stored.spec.model_copy(update={"replicas": to})})
    )
    await controller.run_pass()
    left = [c for c in cells_of(store) if c.metadata.deletion_timestamp is None]
    return sorted(c.spec.node_name or "" for c in left)


async def test_scale_down_by_node_keeps_one_on_each_node() -> None:
    # The three oldest are on n1 and n2: keeping them would leave n3 empty.
    assert await scaled_down(None, ["n1", "n1", "n2", "n3", "n3", "n2"], 3) == [
        "n1",
        "n2",
        "n3",
    ]


async def test_scale_down_by_zone_counts_the_nodes_labels() -> None:
    # Zone a (n1, n2) holds the three oldest; zone b (n3) the newest.
    assert await scaled_down({"topologyKey": "zone"}, ["n1", "n2", "n1", "n3"], 2) in (
        ["n1", "n3"],
        ["n2", "n3"],
    )
