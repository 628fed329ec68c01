"""The framework's Prometheus metrics, registered once per ``CollectorRegistry``.

prometheus-client refuses a second collector with the same name in one registry, yet a
process may run several ``Operator``s (the tests do, and kukeond could). So the
collectors live in one ``FrameworkMetrics`` per registry, shared by every operator that
reports into it; tests pass a private ``CollectorRegistry`` and read values from it.
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

RESULT_SUCCESS = "success"
RESULT_TEMPORARY = "temporary_error"
RESULT_PERMANENT = "permanent_error"
RESULT_ERROR = "error"
RESULT_CANCELLED = "cancelled"
RESULT_REQUEUED = "requeued"
"""A planned wait (``Requeue``: a restart back-off): no error, run again at its delay."""
RESULT_WAITING = "waiting"
"""A ``WaitingError`` (a parent not Ready yet): no error, retried when it changes."""

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class FrameworkMetrics:
    """kukeon_reconcile_*, kukeon_watch_*, kukeon_task_*, kukeon_events_* and kukeon_node_*
    collectors bound to one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconcile_total = Counter(
            "kukeon_reconcile_total",
            "Handler runs by kind and result (success, temporary_error, permanent_error, "
            "error, cancelled; not errors: waiting, for another object, and requeued, a "
            "planned wait such as a container's restart back-off).",
            ["kind", "result"],
            registry=registry,
        )
        self.reconcile_duration = Histogram(
            "kukeon_reconcile_duration_seconds",
            "Wall time of one handler run, by kind.",
            ["kind"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "kukeon_queue_depth",
            "Objects due for a handler now and not taken by a worker yet, by kind (as "
            "Kubernetes' workqueue_depth: one waiting out a retry's or requeue's delay is "
            "not counted until the delay ends).",
            ["kind"],
            registry=registry,
        )
        self.longest_running_handler = Gauge(
            "kukeon_longest_running_handler_seconds",
            "Age of the oldest handler pass still running, by kind (as Kubernetes' "
            "workqueue_longest_running_processor_seconds): a pass that keeps growing is stuck "
            "(the log says where it waits once it passes long_pass_seconds).",
            ["kind"],
            registry=registry,
        )
        self.retries_total = Counter(
            "kukeon_reconcile_retries_total",
            "Retries scheduled after a failed handler run, by kind (not after a wait: "
            "results waiting and requeued are no failures).",
            ["kind"],
            registry=registry,
        )
        self.watch_restarts_total = Counter(
            "kukeon_watch_restarts_total",
            "Restarts of a kind's list+watch, by kind and reason (gone, rewound, unavailable, "
            "error).",
            ["kind", "reason"],
            registry=registry,
        )
        self.task_restarts_total = Counter(
            "kukeon_task_restarts_total",
            "Restarts of a supervised background task after it crashed, by task.",
            ["task"],
            registry=registry,
        )
        self.events_dropped_total = Counter(
            "kukeon_events_dropped_total",
            "Events not written, by reason (queue_full: the recorder's queue was full; "
            "write_failed: etcd refused or could not be reached).",
            ["reason"],
            registry=registry,
        )
        (
            self.node_name_displaced,
            self.node_lease_unconfirmed,
            self.node_fenced,
            self.node_fence_held,
        ) = _node_gauges(registry)
        self.events_written_total = Counter(
            "kukeon_events_written_total",
            "Event writes, new Events and repeats (a repeat bumps the count of its Event).",
            registry=registry,
        )


def _node_gauges(registry: CollectorRegistry) -> tuple[Gauge, Gauge, Gauge, Gauge]:
    """kukeon_node_name_displaced, kukeon_node_lease_unconfirmed_seconds, kukeon_node_fenced,
    kukeon_node_fence_held."""
    displaced = Gauge(
        "kukeon_node_name_displaced",
        "1 while another live kukeond's lease holds this process's node name: this one "
        "does not converge the node (its workloads are left running as they are), 0 "
        "otherwise.",
        registry=registry,
    )
    unconfirmed = Gauge(
        "kukeon_node_lease_unconfirmed_seconds",
        "Seconds since etcd last confirmed this node's heartbeat lease (a keepalive "
        "answered or a lease granted; 0 before the first): it grows while etcd is out "
        "of reach of this node, and past fenceAfterSeconds the node fences itself.",
        registry=registry,
    )
    fenced = Gauge(
        "kukeon_node_fenced",
        "1 while this node is fenced (its scheduler-placed cells stopped for want of a "
        "renewed heartbeat lease), 0 otherwise.",
        registry=registry,
    )
    held = Gauge(
        "kukeon_node_fence_held",
        "1 while this node's fence is due (its lease unconfirmed past fenceAfterSeconds) "
        "but held: every peer it knew answered that etcd is down for it too, so no cell "
        "can be moved and its cells run on; 0 otherwise.",
        registry=registry,
    )
    return displaced, unconfirmed, fenced, held


_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, FrameworkMetrics] = (
    weakref.WeakKeyDictionary()
)


def metrics_for(registry: CollectorRegistry | None = None) -> FrameworkMetrics:
    """The collectors of ``registry`` (the global one by default), created on first use."""
    target = REGISTRY if registry is None else registry
    with _lock:
        found = _by_registry.get(target)
        if found is None:
            found = FrameworkMetrics(target)
            _by_registry[target] = found
        return found
