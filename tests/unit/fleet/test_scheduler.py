"""The scheduler's decision without etcd: filter, score, placement messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kukeon.api import Cell, Node, NodeCondition, parse_resource
from kukeon.controllers.nodelost import ready_since
from kukeon.controllers.scheduler import (
    SCHEDULED_BY,
    NodeView,
    cell_memory_request,
    choose_node,
    filter_reason,
    is_scheduler_placed,
    score,
    selector_matches,
)

MIB = 1024 * 1024


def cell(name: str = "c", *, memory: list[int | None] | None = None, **spec: Any) -> Cell:
    limits = memory if memory is not None else [None]
    containers = []
    for index, limit in enumerate(limits):
        container: dict[str, Any] = {"id": f"k{index}", "image": "busybox"}
        if limit is not None:
            container["resources"] = {"memoryLimitBytes": limit}
        containers.append(container)
    parsed = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {"containers": containers, **spec},
        }
    )
    assert isinstance(parsed, Cell)
    return parsed


def node(name: str, **fields: Any) -> NodeView:
    fields.setdefault("ready", True)
    fields.setdefault("allocatable_memory", 1024 * MIB)
    return NodeView(name=name, **fields)


def test_memory_request_sums_the_containers_limits() -> None:
    assert cell_memory_request(cell(memory=[64 * MIB, None, 32 * MIB])) == 96 * MIB
    assert cell_memory_request(cell()) == 0


def test_selector_matches_every_pair() -> None:
    assert selector_matches({}, {})
    assert selector_matches({"zone": "a"}, {"zone": "a", "disk": "ssd"})
    assert not selector_matches({"zone": "a", "disk": "ssd"}, {"zone": "a"})
    assert not selector_matches({"zone": "a"}, {"zone": "b"})


def test_filter_gives_the_first_reason_a_node_cannot_take_the_cell() -> None:
    assert filter_reason(node("n", ready=False), selector={}, memory=0) == "not Ready"
    assert "cordoned" in (filter_reason(node("n", unschedulable=True), selector={}, memory=0) or "")
    reason = filter_reason(node("n", labels={"zone": "b"}), selector={"zone": "a"}, memory=0)
    assert reason == "labels do not match nodeSelector zone=a"
    full = node("n", allocatable_memory=100 * MIB, used_memory=90 * MIB)
    assert "not enough memory" in (filter_reason(full, selector={}, memory=20 * MIB) or "")
    assert filter_reason(full, selector={}, memory=10 * MIB) is None
    # A cell without limits fits even where the memory is unknown.
    assert filter_reason(node("n", allocatable_memory=0), selector={}, memory=0) is None


def test_score_prefers_fewest_cells_then_most_free_memory_then_name() -> None:
    busy = node("a", cells=3)
    idle_small = node("b", cells=1, allocatable_memory=100 * MIB)
    idle_big = node("c", cells=1, allocatable_memory=200 * MIB)
    assert min([busy, idle_small, idle_big], key=score).name == "c"
    assert min([node("z"), node("y")], key=score).name == "y"


def test_choose_node_spreads_a_batch_when_counts_are_kept() -> None:
    views = [node("a"), node("b"), node("c")]
    placed: dict[str, int] = {}
    for index in range(30):
        placement = choose_node(cell(f"c{index}"), views)
        assert placement.node is not None
        placed[placement.node] = placed.get(placement.node, 0) + 1
        next(v for v in views if v.name == placement.node).cells += 1
    assert placed == {"a": 10, "b": 10, "c": 10}


def test_choose_node_honours_the_selector() -> None:
    views = [node("a"), node("b", labels={"disk": "ssd"}), node("c")]
    placement = choose_node(cell(nodeSelector={"disk": "ssd"}), views)
    assert placement.node == "b"
    assert set(placement.reasons) == {"a", "c"}


def test_unschedulable_message_names_every_node() -> None:
    views = [node("a", ready=False), node("b", unschedulable=True), node("c")]
    placement = choose_node(cell(nodeSelector={"gpu": "yes"}), views)
    assert placement.node is None
    message = placement.message()
    assert message.startswith("0/3 nodes are available: ")
    assert "a: not Ready" in message
    assert "b: cordoned" in message
    assert "c: labels do not match nodeSelector gpu=yes" in message
    assert choose_node(cell(), []).message() == "no node is registered"


def test_scheduler_placed_is_the_annotation() -> None:
    placed = cell()
    placed.metadata.annotations[SCHEDULED_BY] = "scheduler"
    assert is_scheduler_placed(placed)
    assert not is_scheduler_placed(cell(nodeName="n1"))


def test_ready_since_is_the_ready_condition_transition() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    lost = Node.model_validate({"metadata": {"name": "n"}})
    assert ready_since(lost) is None
    lost.status.conditions.append(
        NodeCondition(type="Ready", status="Unknown", last_transition_time=when)
    )
    assert ready_since(lost) == when


def test_a_node_whose_containerd_does_not_answer_takes_no_cell_but_is_not_lost() -> None:
    from kukeon.api.node import RUNTIME_UNAVAILABLE
    from kukeon.api.placement import node_view

    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "status": {
            "state": "Ready",
            "conditions": [{"type": RUNTIME_UNAVAILABLE, "status": "True"}],
        },
    }
    parsed = parse_resource(document)
    assert isinstance(parsed, Node)
    down = node_view(parsed, {})
    assert down.ready  # its cells are not moved elsewhere
    assert down.runtime_unavailable
    reason = filter_reason(down, selector={}, memory=0)
    assert reason == "its containerd does not answer (RuntimeUnavailable)"
    answering = parsed.model_copy(deep=True)
    answering.status.conditions[0].status = "False"
    assert filter_reason(node_view(answering, {}), selector={}, memory=0) is None
    pressed = parsed.model_copy(deep=True)
    pressed.status.conditions = [NodeCondition(type="DiskPressure", status="True")]
    full = node_view(pressed, {})
    assert full.ready
    assert filter_reason(full, selector={}, memory=0) == "its disk is nearly full (DiskPressure)"


def test_a_realms_cells_reserve_no_more_than_its_memory_cap() -> None:
    """A realm held to 64 MiB on a node (spec.limits.memoryBytes) reserves at most that much
    of it, whatever its cells' limits add up to: another realm's limited cell still fits."""
    view = node("n1", memory_caps={"capped": 64 * MIB})
    hog = cell("hog", memory=[1024 * MIB], realmId="capped")
    assert view.memory_needed(hog) == 64 * MIB
    view.count(hog)
    assert view.used_memory == 64 * MIB
    second = cell("second", memory=[32 * MIB], realmId="capped")
    assert view.memory_needed(second) == 0  # the realm's cap is reserved already
    other = cell("other", memory=[512 * MIB], realmId="other")
    assert choose_node(other, [view]).node == "n1"
    view.count(other)
    assert view.used_memory == 576 * MIB
    view.count(hog, -1)  # leaving: the realm reserves nothing more
    assert view.used_memory == 512 * MIB
    assert view.realm_memory == {"capped": 0, "other": 512 * MIB}
    # An uncapped realm's limits count whole, as before.
    plain = node("n2")
    plain.count(cell("big", memory=[1024 * MIB], realmId="other"))
    assert choose_node(cell("more", memory=[MIB], realmId="other"), [plain]).node is None


def test_an_unknown_allocatable_takes_no_limited_cell_even_under_a_cap() -> None:
    view = node("n1", allocatable_memory=0, memory_caps={"capped": 64 * MIB})
    view.count(cell("hog", memory=[1024 * MIB], realmId="capped"))
    placement = choose_node(cell("x", memory=[MIB], realmId="capped"), [view])
    assert placement.node is None
    assert "not enough memory" in placement.reasons["n1"]


def test_reserved_memory_holds_each_capped_realm_to_its_cap() -> None:
    """The one rule (scheduler and kukectl drain): per realm, its cells' limits added up,
    at most its cap; a realm without a cap reserves its whole sum."""
    from kukeon.api.placement import reserved_memory

    caps = {"capped": 64 * MIB}
    assert reserved_memory({}, caps) == 0
    assert reserved_memory({"capped": 1024 * MIB}, caps) == 64 * MIB
    assert reserved_memory({"capped": 32 * MIB}, caps) == 32 * MIB  # under its cap: its sum
    assert reserved_memory({"plain": 1024 * MIB}, caps) == 1024 * MIB
    both = {"capped": 1024 * MIB, "plain": 512 * MIB}
    assert reserved_memory(both, caps) == 576 * MIB
    assert reserved_memory(both, {}) == 1536 * MIB
