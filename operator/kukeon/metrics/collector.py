"""The hierarchy's state as Prometheus series, computed at scrape time from the documents.

Nothing here is a long-lived ``Gauge`` with ``.labels(...).set()``: such series outlive
the object they describe (a deleted cell would report ``Ready`` forever). Every scrape
builds fresh metric families from the ``DocumentCache``, so a series exists exactly as
long as its document does. The cost is one pass over the cached documents per scrape,
no I/O: O(documents + containers), a few milliseconds for hundreds of cells.

State gauges are one-hot over every value of the kind's state enum (``state="Ready"`` is
1, every other state 0), so ``sum by (state)`` counts objects per state and a query for
a state nobody is in still returns zeros instead of nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from kukeon.api import (
    CellState,
    Kind,
    RealmState,
    Resource,
    SpaceState,
    StackState,
    key_of,
)

from .cache import DocumentCache

AnyResource = Resource[Any, Any]
_ONE = 1.0
_ZERO = 0.0

CELL_LABELS = ("realm", "space", "stack", "cell", "node")
CONTAINER_LABELS = (*CELL_LABELS, "container")
DELEGATION_LABELS = ("kind", "realm", "space", "stack", "cell", "controller")
_LAYER_LABELS = ("realm", "space", "stack", "cell")
_LAYER_STATE_METRICS: dict[Kind, tuple[str, type[StrEnum], str]] = {
    Kind.REALM: ("kukeon_realm_state", RealmState, "realm"),
    Kind.SPACE: ("kukeon_space_state", SpaceState, "space"),
    Kind.STACK: ("kukeon_stack_state", StackState, "stack"),
}


def cell_node(cell: AnyResource, default: str) -> str:
    """The node a cell belongs to: its spec's, else the one that wrote its status, else ours."""
    return str(cell.spec.node_name or cell.status.node_name or default)


@dataclass(slots=True)
class _Families:
    """The families of one scrape, filled in one pass over the documents."""

    synced: GaugeMetricFamily
    ready_observed: GaugeMetricFamily
    cell_state: GaugeMetricFamily
    layer_state: dict[Kind, GaugeMetricFamily]
    delegated: GaugeMetricFamily
    restarts: CounterMetricFamily
    exit_code: GaugeMetricFamily

    @classmethod
    def empty(cls) -> _Families:
        layer_state: dict[Kind, GaugeMetricFamily] = {}
        for kind, (name, _, own_label) in _LAYER_STATE_METRICS.items():
            scope = _LAYER_LABELS[: _LAYER_LABELS.index(own_label) + 1]
            layer_state[kind] = GaugeMetricFamily(
                name,
                f"The {kind.value.lower()}'s status.state, one-hot: 1 for its current state, "
                "0 for the others.",
                labels=[*scope, "state"],
            )
        return cls(
            synced=GaugeMetricFamily(
                "kukeon_metrics_cache_synced",
                "1 once this daemon's document cache has listed the kind; 0 while its "
                "series are not loaded yet.",
                labels=["kind"],
            ),
            ready_observed=GaugeMetricFamily(
                "kukeon_cell_ready_observed",
                "1 once the cell has been seen Ready (status.readyObserved latch), else 0.",
                labels=list(CELL_LABELS),
            ),
            cell_state=GaugeMetricFamily(
                "kukeon_cell_state",
                "The cell's status.state, one-hot: 1 for its current state, 0 for the others.",
                labels=[*CELL_LABELS, "state"],
            ),
            layer_state=layer_state,
            delegated=GaugeMetricFamily(
                "kukeon_subtree_controller_delegated",
                "1 for each cgroup controller the object's cgroup delegates to its children "
                "(status.subtreeControllers); labels of deeper levels are empty.",
                labels=list(DELEGATION_LABELS),
            ),
            restarts=CounterMetricFamily(
                "kukeon_container_restarts",
                "Times the container was restarted (status.containers[].restartCount).",
                labels=list(CONTAINER_LABELS),
            ),
            exit_code=GaugeMetricFamily(
                "kukeon_container_last_exit_code",
                "Exit code of the container's last exit (status.containers[].exitCode); "
                "absent while it never exited.",
                labels=list(CONTAINER_LABELS),
            ),
        )

    def all(self) -> list[Metric]:
        return [
            self.synced,
            self.ready_observed,
            self.cell_state,
            *self.layer_state.values(),
            self.delegated,
            self.restarts,
            self.exit_code,
        ]


class HierarchyCollector(Collector):
    """Realm/space/stack/cell state, readiness, cgroup delegation and container restarts.

    ``node_name`` labels cells that name no node (neither ``spec.nodeName`` nor
    ``status.nodeName``). With ``only_node`` set, cells and containers of other nodes are
    left out, so in a fleet each kukeond reports its own cells and sums do not double
    count; realms, spaces and stacks are fleet-wide and always reported.
    """

    def __init__(
        self, *, cache: DocumentCache, node_name: str, only_node: str | None = None
    ) -> None:
        self._cache = cache
        self._node_name = node_name
        self._only_node = only_node

    def describe(self) -> Iterable[Metric]:
        # Names only: lets the registry refuse a duplicate without running a scrape.
        return _Families.empty().all()

    def collect(self) -> Iterable[Metric]:
        families = _Families.empty()
        for kind in Kind:
            families.synced.add_metric([kind.value], 1.0 if self._cache.synced(kind) else 0.0)
        for kind, (_, states, _) in _LAYER_STATE_METRICS.items():
            state_family = families.layer_state[kind]
            for document in self._cache.documents(kind):
                key = key_of(document)
                _add_one_hot(state_family, key, states, document.status.state)
                _add_delegation(families.delegated, kind, key, document)
        for cell in self._cache.documents(Kind.CELL):
            self._add_cell(families, cell)
        return families.all()

    def _add_cell(self, families: _Families, cell: AnyResource) -> None:
        node = cell_node(cell, self._node_name)
        if self._only_node is not None and node != self._only_node:
            return
        key = key_of(cell)
        labels = [*key, node]
        status = cell.status
        families.ready_observed.add_metric(labels, 1.0 if status.ready_observed else 0.0)
        _add_one_hot(families.cell_state, labels, CellState, status.state)
        _add_delegation(families.delegated, Kind.CELL, key, cell)
        seen: set[str] = set()
        for container in status.containers:
            if container.id in seen:  # a duplicate would make the whole scrape invalid
                continue
            seen.add(container.id)
            container_labels = [*labels, container.id]
            families.restarts.add_metric(container_labels, float(container.restart_count))
            if container.exit_code is not None:
                families.exit_code.add_metric(container_labels, float(container.exit_code))


def _add_one_hot(
    family: GaugeMetricFamily, labels: Sequence[str], states: type[StrEnum], current: StrEnum
) -> None:
    # The bulk of every scrape (one sample per state per object): Samples are built
    # directly from one shared base, without add_metric's per-sample zip.
    names = family._labelnames
    base = dict(zip(names[:-1], labels, strict=True))
    state_label = names[-1]
    current_value = current.value
    append = family.samples.append
    name = family.name
    for value in _state_values(states):
        one_hot = _ONE if value == current_value else _ZERO
        append(Sample(name, {**base, state_label: value}, one_hot))


@functools.cache
def _state_values(states: type[StrEnum]) -> tuple[str, ...]:
    return tuple(state.value for state in states)


def _add_delegation(
    family: GaugeMetricFamily, kind: Kind, key: Sequence[str], document: AnyResource
) -> None:
    layers = [*key, *([""] * (len(_LAYER_LABELS) - len(key)))]
    # dict.fromkeys: a controller listed twice must not yield a duplicate series.
    for controller in dict.fromkeys(document.status.subtree_controllers):
        family.add_metric([kind.value, *layers, controller], 1.0)
