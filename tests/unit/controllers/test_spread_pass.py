"""The scheduler's pass keeps a CellSet's `spec.spread`: it reads the sets when it has one
of their cells to place, leaves a cell no domain has room for Pending/Unschedulable with
each node's reason, and places it once a node is open to it."""

from __future__ import annotations

from typing import Any

from kukeon.api import Cell, CellSet, CellState, Kind, Node, parse_resource
from kukeon.controllers.scheduler import UNSCHEDULABLE

from .test_scheduling_pass import Clock, Fleet, add_node, fleet, get_cell, scheduler

__all__ = ["fleet"]  # the in-memory fleet fixture, shared with the scheduler's pass tests


async def add_set(store: Fleet, replicas: int, **spec: Any) -> CellSet:
    cellset = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "web"},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"id": "main", "image": "busybox"}]},
                },
                **spec,
            },
        }
    )
    assert isinstance(cellset, CellSet)
    await store.create(cellset)
    for index in range(replicas):
        cell = parse_resource(cellset.cell_document(f"web-{index}", cellset.template_hash()))
        assert isinstance(cell, Cell)
        await store.create(cell)
    return cellset


async def nodes_of(store: Fleet, replicas: int) -> dict[str, str | None]:
    return {f"web-{i}": (await get_cell(store, f"web-{i}")).spec.node_name for i in range(replicas)}


async def test_a_pass_places_a_sets_cells_by_zone(fleet: Fleet) -> None:
    await add_node(fleet, "n1", labels={"zone": "a"})
    await add_node(fleet, "n2", labels={"zone": "a"})
    await add_node(fleet, "n3", labels={"zone": "b"})
    await add_set(fleet, 4, spread={"topologyKey": "zone"})
    await scheduler(fleet, Clock()).run_pass()
    placed = list((await nodes_of(fleet, 4)).values())
    assert sorted(map(str, placed)) == ["n1", "n2", "n3", "n3"]


async def test_a_cell_no_domain_takes_is_pending_until_a_node_opens(fleet: Fleet) -> None:
    await add_node(fleet, "n1")
    await add_node(fleet, "n2")
    await add_set(fleet, 1, spread={"topologyKey": "rack"})
    pass_ = scheduler(fleet, Clock())
    await pass_.run_pass()
    pending = await get_cell(fleet, "web-0")
    assert pending.spec.node_name is None
    assert pending.status.state == CellState.PENDING
    assert pending.status.reason == UNSCHEDULABLE
    assert pending.status.message == (
        "0/2 nodes are available: n1: no label rack (the set's spread.topologyKey);"
        " n2: no label rack (the set's spread.topologyKey)"
    )

    node = await fleet.get(Kind.NODE, ("n2",))
    assert isinstance(node, Node)
    node.metadata.labels["rack"] = "r1"
    await fleet.update(node)
    await pass_.run_pass(woken=False)  # the interval's pass: a cell still needs a node
    assert (await get_cell(fleet, "web-0")).spec.node_name == "n2"


async def test_sets_are_read_only_when_one_of_their_cells_needs_a_node(fleet: Fleet) -> None:
    await add_node(fleet, "n1")
    await add_set(fleet, 2)
    listed: list[Kind] = []
    real_list = fleet.list

    async def spying_list(kind: Kind, *args: Any, **kwargs: Any) -> Any:
        listed.append(kind)
        return await real_list(kind, *args, **kwargs)

    fleet.list = spying_list  # type: ignore[method-assign]
    pass_ = scheduler(fleet, Clock())
    await pass_.run_pass()
    assert listed.count(Kind.CELL_SET) == 1
    assert set((await nodes_of(fleet, 2)).values()) == {"n1"}  # one node: a share of 2
    await pass_.run_pass()
    assert listed.count(Kind.CELL_SET) == 1, "every cell placed: the sets are not read"
