"""The hierarchy's state as Prometheus series, computed at scrape time from the documents.

Nothing here is a long-lived ``Gauge`` with ``.labels(...).set()``: such series outlive
the object they describe (a deleted cell would report ``Ready`` forever). Every scrape
builds fresh metric families from the ``DocumentCache``, so a series exists exactly as
long as its document does. The cost is one pass over the cached documents per scrape,
no I/O: O(documents + containers).

A document's samples depend only on the document (and the node name), and a stored
document never changes without a new ``resourceVersion``. So each document's samples and
their rendered text are kept from one scrape to the next, keyed by that version, and a
scrape only rebuilds what changed since the last one; documents that are gone drop out of
the memo at the next scrape.

State gauges are one-hot over every value of the kind's state enum (``state="Ready"`` is
1, every other state 0), so ``sum by (state)`` counts objects per state and a query for
a state nobody is in still returns zeros instead of nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from kukeon.api import (
    CellState,
    ContainerState,
    Kind,
    RealmState,
    Resource,
    SpaceState,
    StackState,
    key_of,
)

from .cache import DocumentView
from .exposition import PrerenderedCounterFamily, PrerenderedGaugeFamily, render_samples

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
COLLECTED_KINDS: tuple[Kind, ...] = (*_LAYER_STATE_METRICS, Kind.CELL, Kind.CELL_SET)
"""The kinds the collectors read (this module's and ``cellsets``'): the only ones the
metrics' cache lists and watches, and the ``kukeon_metrics_cache_synced`` series. Not
Secrets (their opened values would sit in the cache for nothing), Nodes or CellProfiles."""


def cell_node(cell: AnyResource, default: str) -> str:
    """The node a cell belongs to: its spec's, else the one that wrote its status, else ours."""
    return str(cell.spec.node_name or cell.status.node_name or default)


# Families in exposition order: (id, name, help, labels, is a counter).
_FAMILIES: tuple[tuple[str, str, str, tuple[str, ...], bool], ...] = (
    (
        "ready_observed",
        "kukeon_cell_ready_observed",
        "1 once the cell has been seen Ready (status.readyObserved latch), else 0.",
        CELL_LABELS,
        False,
    ),
    (
        "cell_state",
        "kukeon_cell_state",
        "The cell's status.state, one-hot: 1 for its current state, 0 for the others.",
        (*CELL_LABELS, "state"),
        False,
    ),
    *(
        (
            name,
            name,
            f"The {kind.value.lower()}'s status.state, one-hot: 1 for its current state, "
            "0 for the others.",
            (*_LAYER_LABELS[: _LAYER_LABELS.index(own_label) + 1], "state"),
            False,
        )
        for kind, (name, _, own_label) in _LAYER_STATE_METRICS.items()
    ),
    (
        "delegated",
        "kukeon_subtree_controller_delegated",
        "1 for each cgroup controller the object's cgroup delegates to its children "
        "(status.subtreeControllers); labels of deeper levels are empty.",
        DELEGATION_LABELS,
        False,
    ),
    (
        "restarts",
        "kukeon_container_restarts",
        "Times the container was restarted (status.containers[].restartCount).",
        CONTAINER_LABELS,
        True,
    ),
    (
        "container_ready",
        "kukeon_container_ready",
        "1 while the container runs and its readiness (and startup) probes pass, or it has "
        "none (status.containers[].ready); 0 otherwise.",
        CONTAINER_LABELS,
        False,
    ),
    (
        "exit_code",
        "kukeon_container_last_exit_code",
        "Exit code of the container's last exit (status.containers[].exitCode, or "
        "lastState.exitCode once it was restarted or while it waits for its restart); "
        "absent while it never exited.",
        CONTAINER_LABELS,
        False,
    ),
    (
        "waiting",
        "kukeon_container_status_waiting_reason",
        "1 while the container is Waiting (e.g. reason CrashLoopBackOff: its restart "
        "back-off), as kube-state-metrics' kube_pod_container_status_waiting_reason; "
        "absent otherwise.",
        (*CONTAINER_LABELS, "reason"),
        False,
    ),
)

_Family = PrerenderedGaugeFamily | PrerenderedCounterFamily


def _empty_families() -> dict[str, _Family]:
    families: dict[str, _Family] = {}
    for family_id, name, documentation, labels, counter in _FAMILIES:
        family_type = PrerenderedCounterFamily if counter else PrerenderedGaugeFamily
        families[family_id] = family_type(name, documentation, labels=labels)
    return families


def _synced_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "kukeon_metrics_cache_synced",
        "1 once this daemon's document cache has listed the kind; 0 while its "
        "series are not loaded yet.",
        labels=["kind"],
    )


class _Chunk(NamedTuple):
    samples: tuple[Sample, ...]
    text: str


class _Memo(NamedTuple):
    """One document's chunks per family, valid while its version is unchanged."""

    version: tuple[str, str]
    chunks: dict[str, _Chunk]


_MemoKey = tuple[Kind, tuple[str, ...]]


def _chunks(series: dict[str, list[Sample]]) -> dict[str, _Chunk]:
    return {
        family_id: _Chunk(tuple(samples), render_samples(samples))
        for family_id, samples in series.items()
        if samples
    }


def _one_hot(
    name: str, base: dict[str, str], states: type[StrEnum], current: StrEnum
) -> list[Sample]:
    current_value = current.value
    return [
        Sample(name, {**base, "state": value}, _ONE if value == current_value else _ZERO)
        for value in _state_values(states)
    ]


@functools.cache
def _state_values(states: type[StrEnum]) -> tuple[str, ...]:
    return tuple(state.value for state in states)


def _delegation(kind: Kind, key: Sequence[str], document: AnyResource) -> list[Sample]:
    layers = dict(
        zip(_LAYER_LABELS, [*key, *([""] * (len(_LAYER_LABELS) - len(key)))], strict=True)
    )
    # dict.fromkeys: a controller listed twice must not yield a duplicate series.
    return [
        Sample(
            "kukeon_subtree_controller_delegated",
            {"kind": kind.value, **layers, "controller": controller},
            _ONE,
        )
        for controller in dict.fromkeys(document.status.subtree_controllers)
    ]


def layer_series(kind: Kind, document: AnyResource) -> dict[str, list[Sample]]:
    """The samples of one realm, space or stack, by family id."""
    key = key_of(document)
    name, states, _ = _LAYER_STATE_METRICS[kind]
    base = dict(zip(_LAYER_LABELS, key, strict=False))
    return {
        name: _one_hot(name, base, states, document.status.state),
        "delegated": _delegation(kind, key, document),
    }


def cell_series(cell: AnyResource, node: str) -> dict[str, list[Sample]]:
    """The samples of one cell and its containers, by family id."""
    key = key_of(cell)
    base = dict(zip(CELL_LABELS, (*key, node), strict=True))
    status = cell.status
    restarts: list[Sample] = []
    ready: list[Sample] = []
    exit_codes: list[Sample] = []
    waiting: list[Sample] = []
    seen: set[str] = set()
    for container in status.containers:
        if container.id in seen:  # a duplicate would make the whole scrape invalid
            continue
        seen.add(container.id)
        labels = {**base, "container": container.id}
        restarts.append(
            Sample("kukeon_container_restarts_total", labels, float(container.restart_count))
        )
        ready.append(Sample("kukeon_container_ready", labels, _ONE if container.ready else _ZERO))
        # A restarted container runs, a Waiting one waits for its restart: its exitCode is
        # unset, its last exit in lastState.
        last = container.last_state.exit_code if container.last_state is not None else None
        code = container.exit_code if container.exit_code is not None else last
        if code is not None:
            exit_codes.append(Sample("kukeon_container_last_exit_code", labels, float(code)))
        if container.state == ContainerState.WAITING:
            why = {**labels, "reason": str(container.reason or "")}
            waiting.append(Sample("kukeon_container_status_waiting_reason", why, _ONE))
    return {
        "ready_observed": [
            Sample("kukeon_cell_ready_observed", base, _ONE if status.ready_observed else _ZERO)
        ],
        "cell_state": _one_hot("kukeon_cell_state", base, CellState, status.state),
        "delegated": _delegation(Kind.CELL, key, cell),
        "restarts": restarts,
        "container_ready": ready,
        "exit_code": exit_codes,
        "waiting": waiting,
    }


class HierarchyCollector(Collector):
    """Realm/space/stack/cell state, readiness, cgroup delegation and container restarts.

    ``node_name`` labels cells that name no node (neither ``spec.nodeName`` nor
    ``status.nodeName``). With ``only_node`` set, cells and containers of other nodes are
    left out, so in a fleet each kukeond reports its own cells and sums do not double
    count; realms, spaces and stacks are fleet-wide and always reported.
    """

    def __init__(
        self, *, cache: DocumentView, node_name: str, only_node: str | None = None
    ) -> None:
        self._cache = cache
        self._node_name = node_name
        self._only_node = only_node
        self._memo: dict[_MemoKey, _Memo] = {}

    def describe(self) -> Iterable[Metric]:
        # Names only: lets the registry refuse a duplicate without running a scrape.
        return [_synced_family(), *_empty_families().values()]

    def collect(self) -> Iterable[Metric]:
        synced = _synced_family()
        for kind in COLLECTED_KINDS:
            synced.add_metric([kind.value], _ONE if self._cache.synced(kind) else _ZERO)
        families = _empty_families()
        previous = self._memo
        memo: dict[_MemoKey, _Memo] = {}
        for kind in _LAYER_STATE_METRICS:
            for document in self._cache.documents(kind):
                entry = self._remembered(previous, kind, document, "")
                if entry is None:
                    entry = _Memo(_version(document, ""), _chunks(layer_series(kind, document)))
                memo[(kind, key_of(document))] = entry
                _add(families, entry)
        for cell in self._cache.documents(Kind.CELL):
            node = cell_node(cell, self._node_name)
            if self._only_node is not None and node != self._only_node:
                continue
            entry = self._remembered(previous, Kind.CELL, cell, node)
            if entry is None:
                entry = _Memo(_version(cell, node), _chunks(cell_series(cell, node)))
            memo[(Kind.CELL, key_of(cell))] = entry
            _add(families, entry)
        self._memo = memo  # one assignment: concurrent scrapes each see a whole memo
        return [synced, *families.values()]

    @staticmethod
    def _remembered(
        previous: dict[_MemoKey, _Memo], kind: Kind, document: AnyResource, node: str
    ) -> _Memo | None:
        if not document.metadata.resource_version:
            return None  # not from the store: nothing says it is unchanged
        entry = previous.get((kind, key_of(document)))
        if entry is None or entry.version != _version(document, node):
            return None
        return entry


def _version(document: AnyResource, node: str) -> tuple[str, str]:
    return (document.metadata.resource_version or "", node)


def _add(families: dict[str, _Family], entry: _Memo) -> None:
    for family_id, chunk in entry.chunks.items():
        families[family_id].add_chunk(chunk.samples, chunk.text)
