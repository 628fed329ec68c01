"""Where a cell may run: the scheduler's decision, pure, over snapshots of the nodes.

The scheduler leader (``controllers.scheduler``) and ``kukectl drain`` (which asks, before
it hands a cell back, whether another node could take it) decide the same way:
*filter* (Ready, not cordoned, selector matches, enough allocatable memory for the cell's
limits, each realm's cells reserving no more than its memory cap: ``reserved_memory``; for
a CellSet's cell, its set's spread rule: ``api.spread``), then *score* (fewest
cells of the same CellSet, then fewest cells, then most free memory, then the name: a
set's cells spread over the nodes that fit). Nothing here
talks to etcd, so it is unit-tested as it is and cheap to import from the CLI.

It also names the annotations placement is written with: ``kukeon.io/scheduled-by``
(the scheduler placed the cell: it may move it; without it the cell is *pinned*) and
``kukeon.io/evict-from: <node>`` (``kukectl drain`` asks that node to stop the cell and
hand it back: the node stops its copy first, then clears ``nodeName``, so the scheduler
never places a cell whose old copy still runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .cell import Cell
from .cellset import CELLSET_LABEL, TEMPLATE_HASH_LABEL
from .node import (
    DISK_PRESSURE,
    RUNTIME_UNAVAILABLE,
    SCHEDULED_BY_ANNOTATION,
    SCHEDULED_BY_SCHEDULER,
    Node,
    NodeState,
)
from .realm import Realm

if TYPE_CHECKING:
    from .spread import SpreadLimit

EVICT_ANNOTATION = "kukeon.io/evict-from"
"""Set by ``kukectl drain`` to the drained node's name on the cells it moves."""


def is_scheduler_placed(cell: Cell) -> bool:
    """The scheduler placed it (may move it); otherwise the user pinned it with nodeName."""
    return cell.metadata.annotations.get(SCHEDULED_BY_ANNOTATION) == SCHEDULED_BY_SCHEDULER


def evicted_from(cell: Cell) -> str | None:
    """The node asked to stop the cell and hand it back (``kukectl drain``), if any."""
    return cell.metadata.annotations.get(EVICT_ANNOTATION) or None


def spread_key(cell: Cell) -> str | None:
    """The CellSet a cell belongs to (realm/space/stack/set), or None."""
    owner = cell.metadata.labels.get(CELLSET_LABEL)
    if not owner:
        return None
    spec = cell.spec
    return f"{spec.realm_id}/{spec.space_id}/{spec.stack_id}/{owner}"


def spread_group(cell: Cell) -> str | None:
    """The cells a set's spread rule counts together with ``cell`` (`api.spread`): those of
    its set made from the same template (`spread_key` and the template hash), or None."""
    key = spread_key(cell)
    if key is None:
        return None
    return f"{key}@{cell.metadata.labels.get(TEMPLATE_HASH_LABEL, '')}"


def cell_memory_request(cell: Cell) -> int:
    """What a cell needs of a node's memory: the sum of its containers' memory limits."""
    total = 0
    for container in cell.spec.containers:
        resources = container.resources
        if resources is not None and resources.memory_limit_bytes:
            total += resources.memory_limit_bytes
    return total


def reserved_memory(limits_by_realm: Mapping[str, int], memory_caps: Mapping[str, int]) -> int:
    """What cells reserve of one node's memory, from their memory limits added up per realm
    (``cell_memory_request``): each realm's sum, but no more than its cap (``memory_caps``,
    from ``realm_memory_caps``: its cgroup's ``memory.max`` on every node, which its cells
    together cannot pass). A realm without a cap reserves its whole sum: kukeon has only
    limits, so a limit is what a cell may use and the scheduler keeps room for it, as a
    Kubernetes container with a limit and no request (docs/fleet.md, "Scheduling").

    The one rule for the scheduler and ``kukectl drain`` (both through ``NodeView``): drain
    counted limits whole, so it left running on the drained node a cell the scheduler
    would have placed beside a capped realm's cells."""
    return sum(
        min(asked, memory_caps.get(realm, asked)) for realm, asked in limits_by_realm.items()
    )


@dataclass
class NodeView:
    """What the scheduler knows of one node during one pass."""

    name: str
    ready: bool
    unschedulable: bool = False
    runtime_unavailable: bool = False
    """Its kukeond cannot reach containerd (`RuntimeUnavailable`): no new cell goes there, but
    the node is not lost (its cells run on and are not moved)."""
    disk_pressure: bool = False
    """Its state directory's filesystem is nearly full (`DiskPressure`): no new cell goes there."""
    labels: Mapping[str, str] = field(default_factory=dict)
    allocatable_memory: int = 0
    """Bytes; 0 means unknown, which only cells without memory limits fit."""
    memory_caps: Mapping[str, int] = field(default_factory=dict)
    """Per realm: its `spec.limits.memoryBytes`, the `memory.max` of its cgroup on every
    node. Its cells together never use more here, so they reserve no more of the node
    however much their limits add up to: without the cap a realm's editor held to 64 MiB
    reserved the whole node with one cell's limit, and every other realm's cell with a
    memory limit was Unschedulable there."""
    realm_memory: dict[str, int] = field(default_factory=dict)
    """Per realm: its cells' memory limits on this node added up (not capped)."""
    cells: int = 0
    used_memory: int = 0
    """What the cells here reserve: ``reserved_memory`` of ``realm_memory``."""
    sets: dict[str, int] = field(default_factory=dict)
    """Per CellSet (`spread_key`): how many of its cells the node has."""
    groups: dict[str, int] = field(default_factory=dict)
    """Per `spread_group`: how many of its cells not being deleted the node has."""

    @property
    def free_memory(self) -> int:
        return max(self.allocatable_memory - self.used_memory, 0)

    def _reserved(self, realm: str, asked: int) -> int:
        return reserved_memory({realm: asked}, self.memory_caps)

    def memory_needed(self, cell: Cell) -> int:
        """What placing ``cell`` here adds to ``used_memory`` (less than its limits when its
        realm's cells here would pass the realm's cap)."""
        realm = cell.spec.realm_id
        asked = self.realm_memory.get(realm, 0)
        return self._reserved(realm, asked + cell_memory_request(cell)) - self._reserved(
            realm, asked
        )

    def count(self, cell: Cell, times: int = 1) -> None:
        """Count ``cell`` on this node (``times=-1``: no longer)."""
        self.cells += times
        realm = cell.spec.realm_id
        asked = self.realm_memory.get(realm, 0)
        now = asked + times * cell_memory_request(cell)
        self.used_memory += self._reserved(realm, now) - self._reserved(realm, asked)
        self.realm_memory[realm] = now
        key = spread_key(cell)
        if key is not None:
            self.sets[key] = self.sets.get(key, 0) + times
        group = spread_group(cell)
        if group is not None and cell.metadata.deletion_timestamp is None:
            self.groups[group] = self.groups.get(group, 0) + times


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def filter_reason(node: NodeView, *, selector: Mapping[str, str], memory: int) -> str | None:
    """Why ``node`` cannot take the cell, or None when it can."""
    if not node.ready:
        return "not Ready"
    if node.runtime_unavailable:
        return "its containerd does not answer (RuntimeUnavailable)"
    if node.disk_pressure:
        return "its disk is nearly full (DiskPressure)"
    if node.unschedulable:
        return "cordoned (unschedulable)"
    if not selector_matches(selector, node.labels):
        wanted = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        return f"labels do not match nodeSelector {wanted}"
    if memory and memory > node.free_memory:
        return f"not enough memory: needs {memory} bytes, {node.free_memory} free"
    return None


def score(node: NodeView, spread: str | None = None) -> tuple[int, int, int, str]:
    """Lower is better: fewest cells of the set ``spread`` (a `spread_key`), then fewest
    cells, then most free memory, then the name (stable)."""
    same_set = node.sets.get(spread, 0) if spread is not None else 0
    return (same_set, node.cells, -node.free_memory, node.name)


@dataclass(frozen=True)
class Placement:
    node: str | None
    reasons: Mapping[str, str]
    """Node -> why it was filtered out (for the Unschedulable message)."""

    def message(self) -> str:
        if not self.reasons:
            return "no node is registered"
        parts = [f"{node}: {why}" for node, why in sorted(self.reasons.items())]
        return f"0/{len(self.reasons)} nodes are available: " + "; ".join(parts)


def choose_node(
    cell: Cell, nodes: Iterable[NodeView], spread: SpreadLimit | None = None
) -> Placement:
    """The best node that fits ``cell`` (and keeps its set's ``spread`` rule, when given:
    `api.spread`), or None with each node's reason."""
    fitting: list[NodeView] = []
    reasons: dict[str, str] = {}
    for node in nodes:
        memory = node.memory_needed(cell)
        if not node.allocatable_memory:
            memory = cell_memory_request(cell)  # unknown: only cells without limits fit
        why = filter_reason(node, selector=cell.spec.node_selector, memory=memory)
        if why is None and spread is not None:
            why = spread.reason(node)
        if why is None:
            fitting.append(node)
        else:
            reasons[node.name] = why
    if not fitting:
        return Placement(None, reasons)
    same_set = spread_key(cell)
    return Placement(min(fitting, key=lambda node: score(node, same_set)).name, reasons)


def node_view(node: Node, memory_caps: Mapping[str, int]) -> NodeView:
    """A Node document as the decision sees it (no cells counted yet); ``memory_caps``:
    each realm's memory ceiling on a node (``realm_memory_caps``), required so that no
    decision counts limits past a realm's cap (``reserved_memory``)."""
    return NodeView(
        name=node.metadata.name,
        ready=node.status.state == NodeState.READY,
        unschedulable=node.spec.unschedulable,
        runtime_unavailable=_condition_true(node, RUNTIME_UNAVAILABLE),
        disk_pressure=_condition_true(node, DISK_PRESSURE),
        labels=dict(node.metadata.labels),
        allocatable_memory=node.status.allocatable.memory_bytes,
        memory_caps=memory_caps,
    )


def realm_memory_caps(realms: Iterable[Realm]) -> dict[str, int]:
    """Each realm's memory ceiling on a node (``spec.limits.memoryBytes``), if it has one."""
    return {
        realm.metadata.name: realm.spec.limits.memory_bytes
        for realm in realms
        if realm.spec.limits is not None and realm.spec.limits.memory_bytes
    }


def _condition_true(node: Node, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in node.status.conditions)


def count_cells(views: Mapping[str, NodeView], cells: Iterable[Cell]) -> None:
    """Count every cell (and its memory) on the node it is assigned to."""
    for cell in cells:
        view = views.get(cell.spec.node_name or "")
        if view is not None:
            view.count(cell)


__all__ = [
    "EVICT_ANNOTATION",
    "NodeView",
    "Placement",
    "cell_memory_request",
    "choose_node",
    "count_cells",
    "evicted_from",
    "filter_reason",
    "is_scheduler_placed",
    "node_view",
    "realm_memory_caps",
    "reserved_memory",
    "score",
    "selector_matches",
    "spread_group",
    "spread_key",
]
