"""render_text: the same exposition as prometheus-client's generate_latest, only faster."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Enum, Gauge, Info, Summary, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kukeon.api import Kind
from kukeon.framework.metrics import metrics_for
from kukeon.metrics import (
    DocumentCache,
    HierarchyCollector,
    register_build_info,
    register_process_metrics,
    request_latency_for,
)
from kukeon.metrics.exposition import render_text
from tests.unit.metrics import documents as docs

_VOLATILE = ("process_", "python_gc_")


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    cache = DocumentCache()
    cache.replace(Kind.REALM, [docs.realm("r", controllers=["cpu", "memory"])])
    cache.replace(
        Kind.CELL,
        [
            docs.cell("r", "s", "k", f"c{index}", containers=[{"id": "main", "exitCode": index}])
            for index in range(5)
        ],
    )
    registry.register(HierarchyCollector(cache=cache, node_name='odd "node"\\name\nline'))
    latency = request_latency_for(registry)
    latency.etcd.labels("KV.Range").observe(0.0042)
    latency.containerd.labels("Tasks.Create").observe(12.5)
    register_build_info(registry)
    register_process_metrics(registry)
    framework = metrics_for(registry)
    framework.reconcile_total.labels("Cell", "success").inc(3)
    framework.queue_depth.labels("Cell").set(2)
    Info("kukeon_test_build", "An info metric.", registry=registry).info({"commit": "abc"})
    Enum("kukeon_test_mode", "A stateset.", states=["a", "b"], registry=registry).state("b")
    Summary("kukeon_test_wait_seconds", "A summary.", registry=registry).observe(1.5)
    Gauge("kukeon_test_big", "Large and odd values.", ["v"], registry=registry).labels("x").set(
        1.23456789e12
    )
    return registry


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float | None]:
    found: dict[tuple[str, frozenset[tuple[str, str]]], float | None] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            volatile = sample.name.startswith(_VOLATILE)
            value = None if volatile or math.isnan(sample.value) else sample.value
            found[(sample.name, frozenset(sample.labels.items()))] = value
    return found


def _types(text: str) -> dict[str, str]:
    return {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")
    }


def test_same_samples_and_types_as_generate_latest() -> None:
    registry = _registry()
    ours = render_text(registry).decode()
    theirs = generate_latest(registry).decode()
    assert _samples(ours) == _samples(theirs)
    assert _types(ours) == _types(theirs)
    assert ours.endswith("\n")


def test_escaping_of_label_values() -> None:
    text = render_text(_registry()).decode()
    assert 'node="odd \\"node\\"\\\\name\\nline"' in text
