"""A CellSet's `spec.spread`: the field's shapes (and refusals), and the hard rule of
placement it makes (`kukeon.api.spread`): at most ⌈replicas/domains⌉ cells of the set's
template per node, or per value of a node label, over the nodes open to the cell."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.api import Cell, CellSet, InvalidResource, Node, parse_resource
from kukeon.api.placement import NodeView, choose_node, count_cells
from kukeon.api.spread import (
    SpreadRule,
    most_per_domain,
    rules_by_set,
    spread_limit,
    spread_rule,
)
from kukeon.cli.nodes import plan_drain

MIB = 1 << 20


def set_doc(replicas: int = 6, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"id": "main", "image": "busybox"}]},
            },
            **spec,
        },
    }


def a_set(replicas: int = 6, **spec: Any) -> CellSet:
    cellset = parse_resource(set_doc(replicas, **spec))
    assert isinstance(cellset, CellSet)
    return cellset


def errors_of(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(doc)
    return {error.field: error.message for error in caught.value.causes}


def member(
    cellset: CellSet,
    name: str,
    *,
    node: str | None = None,
    hash_: str | None = None,
    memory: int = 0,
    deleting: bool = False,
) -> Cell:
    document = cellset.cell_document(name, hash_ or cellset.template_hash())
    if node is not None:
        document["spec"]["nodeName"] = node
    if memory:
        for container in document["spec"]["containers"]:
            container["resources"] = {"memoryLimitBytes": memory}
    cell = parse_resource(document)
    assert isinstance(cell, Cell)
    if deleting:
        cell.metadata.deletion_timestamp = datetime.now(UTC)
    return cell


def views(*nodes: NodeView) -> dict[str, NodeView]:
    return {node.name: node for node in nodes}


def place(cellset: CellSet, cell: Cell, nodes: dict[str, NodeView]) -> str | None:
    """The scheduler's decision for ``cell``, counted where it lands."""
    limit = spread_limit(spread_rule(cellset), cell, nodes.values())
    chosen = choose_node(cell, nodes.values(), limit).node
    if chosen is not None:
        nodes[chosen].count(cell)
    return chosen


# --- the field ----------------------------------------------------------------------------


LEFT_OUT = object()


@pytest.mark.parametrize(
    ("spread", "key"),
    [
        (LEFT_OUT, None),  # per node
        (None, None),  # `spread:` left empty
        ({}, None),
        ({"topologyKey": None}, None),
        ({"topologyKey": "zone"}, "zone"),
        ({"topologyKey": "topology.kukeon.io/zone"}, "topology.kukeon.io/zone"),
    ],
)
def test_the_shapes_spread_accepts(spread: Any, key: str | None) -> None:
    cellset = parse_resource(set_doc() if spread is LEFT_OUT else set_doc(spread=spread))
    assert isinstance(cellset, CellSet)
    assert cellset.spec.spread.topology_key == key


@pytest.mark.parametrize(
    ("spread", "field", "says"),
    [
        ("node", "spec.spread", "must be an object"),
        (["zone"], "spec.spread", "must be an object"),
        ({"maxSkew": 1}, "spec.spread.maxSkew", "unknown field"),
        ({"topologyKey": ""}, "spec.spread.topologyKey", "is not a label key"),
        ({"topologyKey": "a/b/c"}, "spec.spread.topologyKey", "is not a label key"),
        ({"topologyKey": "-zone"}, "spec.spread.topologyKey", "is not a label key"),
        ({"topologyKey": "z" * 64}, "spec.spread.topologyKey", "is not a label key"),
        ({"topologyKey": 3}, "spec.spread.topologyKey", "must be a valid string"),
    ],
)
def test_anything_else_is_refused_naming_the_field(spread: Any, field: str, says: str) -> None:
    errors = errors_of(set_doc(spread=spread))
    assert says in errors[field], errors


def test_spread_is_not_part_of_the_template_hash() -> None:
    """Changing the rule places the next cells by it; it rolls no running cell."""
    assert a_set().template_hash() == a_set(spread={"topologyKey": "zone"}).template_hash()


def test_rules_are_found_under_the_key_the_cells_carry() -> None:
    cellset = a_set(4, spread={"topologyKey": "zone"})
    assert rules_by_set([cellset]) == {"default/default/default/web": SpreadRule(4, "zone")}


# --- per node (the default) ---------------------------------------------------------------


def test_most_per_domain_rounds_up() -> None:
    assert [most_per_domain(6, d) for d in (1, 2, 3, 4, 6, 7)] == [6, 3, 2, 2, 1, 1]
    assert most_per_domain(0, 3) == 1
    assert most_per_domain(5, 0) == 0


def test_a_node_with_its_share_takes_no_more_while_others_are_ready() -> None:
    """6 replicas over 3 nodes: 2 per node; n3 short of memory still counts as a domain,
    so the last two cells stay Pending rather than crowd n1 and n2."""
    cellset = a_set(6)
    nodes = views(
        NodeView("n1", True, allocatable_memory=1024 * MIB),
        NodeView("n2", True, allocatable_memory=1024 * MIB),
        NodeView("n3", True, allocatable_memory=64 * MIB),
    )
    landed = [place(cellset, member(cellset, f"c{i}", memory=100 * MIB), nodes) for i in range(6)]
    assert Counter(landed) == {"n1": 2, "n2": 2, None: 2}
    cell = member(cellset, "c9", memory=100 * MIB)
    placement = choose_node(
        cell, nodes.values(), spread_limit(spread_rule(cellset), cell, nodes.values())
    )
    message = placement.message()
    assert "0/3 nodes are available" in message
    assert "n1: spread: 2 of the set's cells on this node already, at most 2" in message
    assert "(6 replicas over 3 nodes)" in message
    assert "n3: not enough memory" in message


def test_the_domains_are_the_nodes_open_to_the_cell() -> None:
    """Not Ready, cordoned or not matching the nodeSelector: not a domain, so the others'
    share grows (a lost or drained node's cells fit on the nodes left)."""
    cellset = a_set(6, nodeSelector={"disk": "ssd"})
    ssd = {"disk": "ssd"}
    nodes = views(
        NodeView("n1", True, labels=ssd),
        NodeView("n2", True, labels=ssd),
        NodeView("n3", False, labels=ssd),
        NodeView("n4", True, unschedulable=True, labels=ssd),
        NodeView("n5", True),
    )
    landed = [place(cellset, member(cellset, f"c{i}"), nodes) for i in range(6)]
    assert Counter(landed) == {"n1": 3, "n2": 3}
    cell = member(cellset, "c9")
    assert spread_limit(spread_rule(cellset), cell, nodes.values()).most == 3


def test_a_lost_node_shrinks_the_domains_so_its_cells_fit_elsewhere() -> None:
    cellset = a_set(6)
    nodes = views(NodeView("n1", True), NodeView("n2", True), NodeView("n3", True))
    count_cells(nodes, [member(cellset, f"c{i}", node=f"n{i % 3 + 1}") for i in range(6)])
    nodes["n3"].ready = False
    for index in (2, 5):  # n3's two cells, handed back
        moved = member(cellset, f"c{index}")
        nodes["n3"].count(member(cellset, f"c{index}", node="n3"), -1)
        assert place(cellset, moved, nodes) in {"n1", "n2"}
    assert nodes["n1"].groups == nodes["n2"].groups
    assert sum(nodes["n1"].groups.values()) == 3


def test_a_surge_counts_only_the_cells_of_its_own_template() -> None:
    """3 replicas, 1 per node, every node full of old cells: the new template's cell is
    placed anyway (the old ones are leaving), and the new cells end one per node."""
    cellset = a_set(3)
    nodes = views(NodeView("n1", True), NodeView("n2", True), NodeView("n3", True))
    count_cells(
        nodes, [member(cellset, f"o{i}", node=f"n{i + 1}", hash_="0ld0ld00") for i in range(3)]
    )
    landed = [place(cellset, member(cellset, f"new{i}"), nodes) for i in range(3)]
    assert Counter(landed) == {"n1": 1, "n2": 1, "n3": 1}
    fourth = member(cellset, "new3")
    limit = spread_limit(spread_rule(cellset), fourth, nodes.values())
    assert choose_node(fourth, nodes.values(), limit).node is None


def test_cells_being_deleted_do_not_count() -> None:
    cellset = a_set(2)
    nodes = views(NodeView("n1", True), NodeView("n2", True))
    count_cells(nodes, [member(cellset, "gone", node="n2", deleting=True)])
    count_cells(nodes, [member(cellset, "kept", node="n1")])
    assert place(cellset, member(cellset, "new"), nodes) == "n2"


def test_without_a_rule_the_set_only_prefers_spreading() -> None:
    """A set's cell whose set is gone (its cascade is under way) is placed as before."""
    cellset = a_set(2)
    nodes = views(NodeView("n1", True), NodeView("n2", True, unschedulable=True))
    count_cells(nodes, [member(cellset, "a", node="n1")])
    assert choose_node(member(cellset, "b"), nodes.values()).node == "n1"


# --- per value of a node label ------------------------------------------------------------


def test_a_topology_key_bounds_each_value_of_the_label() -> None:
    """n1 and n2 share zone a, n3 is zone b: 4 replicas, 2 per zone, so n3 gets 2 while
    zone a's two nodes get 1 each (the preference alone would have put 2 on n1 or n2)."""
    cellset = a_set(4, spread={"topologyKey": "zone"})
    nodes = views(
        NodeView("n1", True, labels={"zone": "a"}),
        NodeView("n2", True, labels={"zone": "a"}),
        NodeView("n3", True, labels={"zone": "b"}),
    )
    landed = [place(cellset, member(cellset, f"c{i}"), nodes) for i in range(4)]
    assert Counter(landed) == {"n1": 1, "n2": 1, "n3": 2}
    fifth = member(cellset, "c4")
    limit = spread_limit(spread_rule(cellset), fifth, nodes.values())
    message = choose_node(fifth, nodes.values(), limit).message()
    assert "n1: spread: 2 of the set's cells in zone=a already, at most 2" in message
    assert "(4 replicas over 2 zone values)" in message


def test_a_node_without_the_label_takes_none_and_says_why() -> None:
    cellset = a_set(2, spread={"topologyKey": "rack"})
    nodes = views(NodeView("n1", True), NodeView("n2", True, labels={"zone": "a"}))
    cell = member(cellset, "c0")
    limit = spread_limit(spread_rule(cellset), cell, nodes.values())
    placement = choose_node(cell, nodes.values(), limit)
    assert placement.node is None
    assert placement.reasons == {
        "n1": "no label rack (the set's spread.topologyKey)",
        "n2": "no label rack (the set's spread.topologyKey)",
    }
    nodes["n2"].labels = {"rack": "r1"}
    assert place(cellset, cell, nodes) == "n2"


def test_a_cordoned_nodes_cells_still_count_for_its_value() -> None:
    cellset = a_set(4, spread={"topologyKey": "zone"})
    nodes = views(
        NodeView("n1", True, labels={"zone": "a"}),
        NodeView("n2", True, unschedulable=True, labels={"zone": "a"}),
        NodeView("n3", True, labels={"zone": "b"}),
    )
    count_cells(nodes, [member(cellset, f"c{i}", node="n2") for i in range(2)])
    assert [place(cellset, member(cellset, f"d{i}"), nodes) for i in range(2)] == ["n3", "n3"]


@settings(max_examples=200, deadline=None)
@given(
    replicas=st.integers(min_value=1, max_value=30),
    zones=st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=6),
    by_label=st.booleans(),
)
def test_every_cell_is_placed_within_its_domains_share(
    replicas: int, zones: list[str | None], by_label: bool
) -> None:
    """Whatever the nodes and their labels, placing a set's cells one by one places all of
    them while a domain exists, and no domain ever holds more than ⌈replicas/domains⌉."""
    cellset = a_set(replicas, spread={"topologyKey": "zone"} if by_label else {})
    nodes = views(
        *(
            NodeView(f"n{i}", True, labels={} if zone is None else {"zone": zone})
            for i, zone in enumerate(zones)
        )
    )
    rule = spread_rule(cellset)
    domains = {rule.domain(node) for node in nodes.values()} - {None}
    landed = [place(cellset, member(cellset, f"c{i}"), nodes) for i in range(replicas)]
    if not domains:
        assert landed == [None] * replicas
        return
    assert None not in landed
    per_domain = Counter(rule.domain(nodes[name]) for name in landed if name is not None)
    assert max(per_domain.values()) <= math.ceil(replicas / len(domains))


# --- kukectl drain asks the same rule -----------------------------------------------------


def node_doc(name: str, zone: str, memory: int) -> Node:
    node = Node.model_validate(
        {"metadata": {"name": name, "labels": {"zone": zone}}, "status": {"state": "Ready"}}
    )
    node.status.allocatable.memory_bytes = memory
    return node


def test_drain_leaves_running_what_the_spread_rule_keeps_off_the_other_nodes() -> None:
    """4 replicas, 2 per zone: zone a is n1 (drained) and n4 (short of memory), zone b
    n2 and n3 with one cell each. n1's cell could go nowhere but zone b, already at its
    share: drain leaves it running on n1 (the preference alone would have moved it to
    n2, where the scheduler would then refuse it, a cell stopped for nothing)."""
    cellset = a_set(4, spread={"topologyKey": "zone"})
    cells = []
    for name, node in {"c0": "n1", "c1": "n1", "c2": "n2", "c3": "n3"}.items():
        cell = member(cellset, name, node=node, memory=100 * MIB)
        cell.metadata.annotations["kukeon.io/scheduled-by"] = "scheduler"
        cells.append(cell)
    nodes = [
        node_doc("n1", "a", 1024 * MIB),
        node_doc("n2", "b", 1024 * MIB),
        node_doc("n3", "b", 1024 * MIB),
        node_doc("n4", "a", 64 * MIB),
    ]
    plan = plan_drain("n1", nodes, cells, [cellset], realms=[])
    assert plan.evict == []
    stuck = dict(plan.stuck)
    assert len(stuck) == 2
    why = stuck["default/default/default/c0"]
    assert "n2: spread: 2 of the set's cells in zone=b already, at most 2" in why
    assert "n4: not enough memory" in why
    assert [c.metadata.name for c in plan_drain("n1", nodes, cells, realms=[]).evict] == [
        "c0",
        "c1",
    ]
