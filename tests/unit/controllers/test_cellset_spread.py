"""The scheduler spreads a CellSet's cells: the node with the fewest of the set's cells wins."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kukeon.api import Cell, CellSet, parse_resource
from kukeon.api.placement import NodeView, choose_node, count_cells


def set_cell(name: str, *, owner: str = "web", node: str | None = None) -> Cell:
    cellset = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": owner},
            "spec": {
                "selector": {"matchLabels": {"app": owner}},
                "template": {
                    "metadata": {"labels": {"app": owner}},
                    "spec": {"containers": [{"id": "a", "image": "busybox"}]},
                },
            },
        }
    )
    assert isinstance(cellset, CellSet)
    document: dict[str, Any] = cellset.cell_document(name, cellset.template_hash())
    if node is not None:
        document["spec"]["nodeName"] = node
    cell = parse_resource(document)
    assert isinstance(cell, Cell)
    return cell


def plain_cell(name: str, node: str) -> Cell:
    cell = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"id": "a", "image": "busybox"}]},
        }
    )
    assert isinstance(cell, Cell)
    return cell


def test_six_replicas_land_two_per_node_whatever_else_runs() -> None:
    views = {name: NodeView(name, True) for name in ("n1", "n2", "n3")}
    # n1 already runs other cells and one of another set: the set's own count decides.
    count_cells(views, [plain_cell(f"p{i}", "n1") for i in range(4)])
    count_cells(views, [set_cell("db-1", owner="db", node="n2")])
    landed: Counter[str] = Counter()
    for index in range(6):
        cell = set_cell(f"web-{index}")
        node = choose_node(cell, views.values()).node
        assert node is not None
        views[node].count(cell)
        landed[node] += 1
    assert sorted(landed.values()) == [2, 2, 2]


def test_cells_already_placed_count_for_their_set() -> None:
    views = {name: NodeView(name, True) for name in ("n1", "n2")}
    count_cells(views, [set_cell("web-a", node="n1"), set_cell("web-b", node="n1")])
    assert choose_node(set_cell("web-c"), views.values()).node == "n2"
    views["n1"].count(set_cell("web-a", node="n1"), -1)
    views["n1"].count(set_cell("web-b", node="n1"), -1)
    assert views["n1"].sets == {"default/default/default/web": 0}
