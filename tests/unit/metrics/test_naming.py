"""Every metric kukeond exposes follows Prometheus naming conventions.

Checked on a registry filled the way kukeond fills it (hierarchy, latency, build info,
process metrics and the framework's collectors), each with at least one sample, so
every family and every label name is seen. The rules: snake_case names and labels with
the ``kukeon_`` prefix on our own; counters (and only counters) end in ``_total``;
histograms carry a base-unit suffix; no non-base units anywhere; no reserved labels.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from kukeon.api import Kind
from kukeon.controllers.logcopiers import replacement_counter
from kukeon.controllers.probing import probe_counter
from kukeon.framework.metrics import metrics_for
from kukeon.metrics import (
    DocumentCache,
    HierarchyCollector,
    register_build_info,
    register_process_metrics,
    request_latency_for,
)
from kukeon.metrics.cellsets import CellSetCollector
from kukeon.metrics.looplag import LoopLagMonitor
from kukeon.metrics.store import InvalidDocumentsCollector
from kukeon.metrics.usage import CellUsageCollector, CellUsageSample
from tests.unit.metrics import documents as docs
from tests.unit.metrics.test_cellsets import a_set

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
BASE_UNITS = ("_seconds", "_bytes", "_ratio")
NON_BASE_UNITS = re.compile(
    r"_(milliseconds|microseconds|nanoseconds|millis|ms|us|minutes|hours|days|kb|mb|gb|"
    r"kilobytes|megabytes|percent)(_|$)"
)


def _families() -> list[Metric]:
    registry = CollectorRegistry()
    cache = DocumentCache()
    cache.replace(Kind.REALM, [docs.realm("r", controllers=["cpu"])])
    cache.replace(Kind.SPACE, [docs.space("r", "s")])
    cache.replace(Kind.STACK, [docs.stack("r", "s", "k")])
    cache.replace(
        Kind.CELL,
        [docs.cell("r", "s", "k", "c", containers=[{"id": "main", "exitCode": 1}])],
    )
    registry.register(HierarchyCollector(cache=cache, node_name="n"))
    cache.replace(Kind.CELL_SET, [a_set()])
    registry.register(CellSetCollector(cache))
    latency = request_latency_for(registry)
    latency.etcd.labels("KV.Range").observe(0.001)
    latency.containerd.labels("Tasks.Create").observe(0.1)
    register_build_info(registry)
    register_process_metrics(registry)
    framework = metrics_for(registry)
    framework.reconcile_total.labels("Cell", "success").inc()
    framework.reconcile_duration.labels("Cell").observe(0.01)
    framework.queue_depth.labels("Cell").set(1)
    framework.retries_total.labels("Cell").inc()
    framework.watch_restarts_total.labels("Cell", "gone").inc()
    framework.task_restarts_total.labels("kukeon-watch Cell").inc()
    registry.register(InvalidDocumentsCollector(lambda: {Kind.CELL: 1, Kind.REALM: 0}))
    usage = CellUsageSample("r", "s", "k", "c", "n", 1.5, 1024, 4096, 3)
    registry.register(CellUsageCollector(lambda: [usage]))
    LoopLagMonitor(registry).observe(0.002)
    probe_counter(registry).labels("r", "s", "k", "c", "main", "readiness", "success").inc()
    replacement_counter(registry).labels("replaced").inc()
    return list(registry.collect())


def _ours(families: list[Metric]) -> list[Metric]:
    return [family for family in families if family.name.startswith("kukeon_")]


def test_every_expected_family_is_exposed() -> None:
    names = {family.name for family in _families()}
    expected = {
        "kukeon_cell_ready_observed",
        "kukeon_cell_state",
        "kukeon_container_ready",
        "kukeon_probe",
        "kukeon_log_copier_replacements",
        "kukeon_event_loop_lag_seconds",
        "kukeon_event_loop_lag_max_seconds",
        "kukeon_realm_state",
        "kukeon_space_state",
        "kukeon_stack_state",
        "kukeon_subtree_controller_delegated",
        "kukeon_container_restarts",  # exposed as kukeon_container_restarts_total
        "kukeon_container_last_exit_code",
        "kukeon_container_status_waiting_reason",
        "kukeon_metrics_cache_synced",
        "kukeon_etcd_request_duration_seconds",
        "kukeon_containerd_request_duration_seconds",
        "kukeon_build_info",
        "kukeon_reconcile",
        "kukeon_reconcile_duration_seconds",
        "kukeon_queue_depth",
        "kukeon_longest_running_handler_seconds",
        "kukeon_reconcile_retries",
        "kukeon_watch_restarts",
        "kukeon_task_restarts",
        "kukeon_registry_invalid_documents",
        "kukeon_cell_cpu_seconds",  # exposed as kukeon_cell_cpu_seconds_total
        "kukeon_cell_memory_bytes",
        "kukeon_cell_memory_limit_bytes",
        "kukeon_cell_pids",
        "process_cpu_seconds",
        "python_info",
    }
    assert expected <= names


def test_names_and_labels_are_snake_case() -> None:
    for family in _families():
        for sample in family.samples:
            assert SNAKE.match(sample.name), sample.name
            for label in sample.labels:
                assert label == "le" or SNAKE.match(label), (sample.name, label)
                assert not label.startswith("__"), (sample.name, label)
                assert label not in {"job", "instance"}, (sample.name, label)


def test_counters_end_in_total_and_nothing_else_does() -> None:
    for family in _ours(_families()):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            else:
                assert not sample.name.endswith("_total"), sample.name


def test_histograms_have_base_unit_suffixes() -> None:
    for family in _ours(_families()):
        if family.type == "histogram":
            assert family.name.endswith(BASE_UNITS), family.name
        assert not NON_BASE_UNITS.search(family.name), family.name


def test_every_family_has_help_text() -> None:
    for family in _ours(_families()):
        assert family.documentation.strip(), family.name
