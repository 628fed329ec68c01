"""A set's cells on a lost node: placed elsewhere after lostNode.replaceAfterSeconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from kukeon.api import (
    CELLSET_LABEL,
    SCHEDULED_BY_ANNOTATION,
    SCHEDULED_BY_SCHEDULER,
    TEMPLATE_HASH_LABEL,
    Cell,
    CellSet,
    Kind,
    Node,
    parse_resource,
)
from kukeon.controllers.cellsetlost import not_ready, to_move
from kukeon.controllers.cellsets import CellSetController
from kukeon.controllers.nodelost import LostTimer
from kukeon.store import Registry
from tests.unit.controllers.test_cellset_progress import a_set

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HASH = a_set("1").template_hash()


def node(name: str, state: str, since: datetime) -> Node:
    condition = {
        "type": "Ready",
        "status": "True" if state == "Ready" else "Unknown",
        "lastTransitionTime": since.isoformat(),
    }
    return Node.model_validate(
        {"metadata": {"name": name}, "status": {"state": state, "conditions": [condition]}}
    )


def cell(name: str, on: str, *, placed: bool = True) -> Cell:
    annotations = {SCHEDULED_BY_ANNOTATION: SCHEDULED_BY_SCHEDULER} if placed else {}
    found = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {
                "name": name,
                "labels": {"app": "web", CELLSET_LABEL: "web", TEMPLATE_HASH_LABEL: HASH},
                "annotations": annotations,
                "creationTimestamp": T0.isoformat(),
            },
            "spec": {"nodeName": on, "containers": [{"id": "a", "image": "busybox"}]},
        }
    )
    assert isinstance(found, Cell)
    return found


def with_lost_node(cellset: CellSet, seconds: int) -> CellSet:
    spec = cellset.spec.model_copy(
        update={
            "lost_node": cellset.spec.lost_node.model_copy(
                update={"replace_after_seconds": seconds}
            )
        }
    )
    return cellset.model_copy(update={"spec": spec})


def test_cells_on_nodes_lost_long_enough_move_unless_pinned() -> None:
    ticks = [100.0]
    timer = LostTimer(lambda: ticks[0])
    nodes = [node("up", "Ready", T0), node("down", "NotReady", T0)]
    assert timer.observe(not_ready(nodes)) == {"down": 0.0}
    ticks[0] += 30
    lost = timer.observe(not_ready(nodes))
    assert lost == {"down": 30.0}
    cells = [cell("a", "down"), cell("b", "up"), cell("pinned", "down", placed=False)]
    assert [c.metadata.name for c in to_move(with_lost_node(a_set("1"), 30), cells, lost)] == ["a"]
    assert to_move(with_lost_node(a_set("1"), 31), cells, lost) == []


class FleetRegistry:
    def __init__(self, cellset: CellSet, nodes: list[Node], cells: list[Cell]) -> None:
        self.cellset = cellset
        self.nodes = nodes
        self.cells = {c.metadata.name: c for c in cells}

    async def list(self, kind: Kind, *args: Any, **kwargs: Any) -> Any:
        by_kind: dict[Kind, list[Any]] = {
            Kind.CELL_SET: [self.cellset],
            Kind.NODE: list(self.nodes),
            Kind.CELL: list(self.cells.values()),
        }
        items = by_kind[kind]
        return type("Listed", (), {"items": items})()

    async def update(self, obj: Cell, *, placement: bool = False) -> Cell:
        self.cells[obj.metadata.name] = obj
        return obj

    async def create(self, obj: Cell) -> Cell:
        self.cells[obj.metadata.name] = obj
        return obj

    async def delete(self, kind: Kind, key: tuple[str, ...]) -> None:
        self.cells.pop(key[-1], None)

    async def update_status(self, obj: CellSet) -> CellSet:
        return obj


def test_a_new_episode_or_a_ready_node_counts_afresh() -> None:
    ticks = [0.0]
    timer = LostTimer(lambda: ticks[0])
    timer.observe([node("down", "NotReady", T0)])
    ticks[0] = 50
    assert timer.observe([node("down", "NotReady", T0)]) == {"down": 50.0}
    # NotReady again since (a new transition, seen or not): a new count
    again = node("down", "NotReady", T0 + timedelta(seconds=40))
    assert timer.observe([again]) == {"down": 0.0}
    ticks[0] = 60
    assert timer.observe([]) == {}  # Ready in between: forgotten
    assert timer.observe([again]) == {"down": 0.0}


async def test_the_set_controller_hands_them_back_to_the_scheduler() -> None:
    now = [T0 + timedelta(seconds=5)]
    ticks = [1000.0]
    cellset = with_lost_node(a_set("1"), 10)
    cells = [cell("web-x-1", "down"), cell("web-x-2", "up")]
    nodes = [node("up", "Ready", T0), node("down", "NotReady", T0)]
    registry = FleetRegistry(cellset, nodes, cells)
    controller = CellSetController(
        registry=cast(Registry, registry), clock=lambda: now[0], monotonic=lambda: ticks[0]
    )
    await controller.run_pass()  # the first sight of "down" NotReady
    now[0] += timedelta(hours=1)  # the wall clock steps forward: no time has passed
    await controller.run_pass()
    assert registry.cells["web-x-1"].spec.node_name == "down", "moved at the clock's jump"
    now[0] += timedelta(seconds=9)
    ticks[0] += 9
    await controller.run_pass()
    assert registry.cells["web-x-1"].spec.node_name == "down"  # lost for 9 s only
    now[0] += timedelta(seconds=1)
    ticks[0] += 1
    await controller.run_pass()
    assert registry.cells["web-x-1"].spec.node_name is None  # the scheduler places it
    assert registry.cells["web-x-2"].spec.node_name == "up"
    assert len(registry.cells) == 2  # the same cell moves: no second copy is made
