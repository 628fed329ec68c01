"""A CellSet's spread: the hard rule the scheduler keeps when it places one of its cells.

The nodes are grouped into *domains*: each node is one (``spec.spread`` left empty, the
default), or each distinct value of the node label ``spec.spread.topologyKey`` is one
(``zone=a``, ``zone=b``...). The domains that count for a cell are those of the nodes
*open* to it: Ready, not cordoned, carrying the labels of its ``nodeSelector`` (and the
topology label: a node without it takes none of the set's cells). A node short of memory
stays open (as a Kubernetes node that lacks resources still counts in
``topologySpreadConstraints``): the rule does not loosen because a node is full.

A cell may go to a node whose domain holds fewer than ⌈replicas/domains⌉ cells of its
*group*: the cells of the same set made from the same template (`placement.spread_group`),
not being deleted. Counting the cell's own template only is what lets a rolling update
surge: the old cells are leaving, and a new cell is never refused a domain because old ones
still fill it; once the rollout is over, the new cells are as spread as a new set's. A
domain's count is taken over its Ready nodes (a cordoned node's cells still run there); a
NotReady node's domain is not open (with no other open node of its value), so when a node
is lost the domains shrink and its cells, handed back, fit on the nodes left.

Nothing here moves a running cell: the rule is checked when a cell is placed (a change of
``spec.spread`` applies to the cells placed afterwards, as Kubernetes does not move pods
when their constraints change). A scale-down takes from the domains holding the most of the
set's cells (`controllers.cellsetplan.removal_order`), but a domain left uneven is not
rebalanced.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .cell import Cell
from .cellset import CellSet
from .placement import NodeView, selector_matches, spread_group


@dataclass(frozen=True)
class SpreadRule:
    """A set's ``spec.spread`` and ``spec.replicas``, as the scheduler keeps them."""

    replicas: int
    topology_key: str | None = None
    """None: each node is its own domain."""

    def domain(self, node: NodeView) -> str | None:
        """The node's domain, or None when it lacks the topology label."""
        return self.domain_of(node.name, node.labels)

    def domain_of(self, name: str, labels: Mapping[str, str]) -> str | None:
        """The domain of the node ``name`` with ``labels`` (`domain`, from a Node's own
        fields: a set's domains need no memory accounting)."""
        if self.topology_key is None:
            return name
        return labels.get(self.topology_key)

    def describe_domain(self, domain: str) -> str:
        return "on this node" if self.topology_key is None else f"in {self.topology_key}={domain}"


def spread_rule(cellset: CellSet) -> SpreadRule:
    return SpreadRule(cellset.spec.replicas, cellset.spec.spread.topology_key)


def rules_by_set(cellsets: Iterable[CellSet]) -> dict[str, SpreadRule]:
    """Each set's rule under the key its cells carry (`placement.spread_key`)."""
    return {
        "/".join((spec.realm_id, spec.space_id, spec.stack_id, cellset.metadata.name)): (
            spread_rule(cellset)
        )
        for cellset in cellsets
        for spec in [cellset.spec]
    }


def is_open_to(node: NodeView, cell: Cell) -> bool:
    """The node could take the cell but for its load (its domain counts for the cell)."""
    return (
        node.ready
        and not node.unschedulable
        and selector_matches(cell.spec.node_selector, node.labels)
    )


def most_per_domain(replicas: int, domains: int) -> int:
    """⌈replicas/domains⌉, and at least one (a set scaled to 0 keeps its last cells'
    rule loose until they go)."""
    if domains <= 0:
        return 0
    return max(1, math.ceil(replicas / domains))


@dataclass(frozen=True)
class SpreadLimit:
    """The rule worked out for one cell over the nodes of one pass."""

    rule: SpreadRule
    counts: Mapping[str, int]
    """Each open domain -> the cells of the cell's group in it."""
    most: int

    def reason(self, node: NodeView) -> str | None:
        """Why the rule keeps the cell off ``node``, or None when it may go there."""
        domain = self.rule.domain(node)
        if domain is None:
            return f"no label {self.rule.topology_key} (the set's spread.topologyKey)"
        count = self.counts.get(domain, 0)
        if count < self.most:
            return None
        over = "nodes" if self.rule.topology_key is None else f"{self.rule.topology_key} values"
        return (
            f"spread: {count} of the set's cells {self.rule.describe_domain(domain)} already,"
            f" at most {self.most} ({self.rule.replicas} replicas over {len(self.counts)} {over})"
        )


def spread_limit(rule: SpreadRule, cell: Cell, nodes: Iterable[NodeView]) -> SpreadLimit:
    """Count, per domain open to ``cell``, the cells of its group on Ready nodes."""
    nodes = list(nodes)
    group = spread_group(cell) or ""
    counts: dict[str, int] = {}
    for node in nodes:
        domain = rule.domain(node)
        if domain is not None and is_open_to(node, cell):
            counts[domain] = 0
    for node in nodes:
        domain = rule.domain(node)
        if node.ready and domain is not None and domain in counts:
            counts[domain] += node.groups.get(group, 0)
    return SpreadLimit(rule, counts, most_per_domain(rule.replicas, len(counts)))


__all__ = [
    "SpreadLimit",
    "SpreadRule",
    "is_open_to",
    "most_per_domain",
    "rules_by_set",
    "spread_limit",
    "spread_rule",
]
