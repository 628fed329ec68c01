"""Who is answering: ``kukeon_build_info`` and the standard process/platform/GC series.

The global ``prometheus_client.REGISTRY`` registers the process collectors by itself;
kukeond serves a registry of its own (tests run several daemons in one process), so they
are added here explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import kukeon


class BuildInfoCollector(Collector):
    """``kukeon_build_info{version} 1``: join on it to see which version a target runs."""

    def __init__(self, version: str | None = None) -> None:
        self._version = version or kukeon.__version__

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "kukeon_build_info",
            "Always 1; the version label says which kukeon runs.",
            labels=["version"],
        )
        family.add_metric([self._version], 1.0)
        return [family]

    def describe(self) -> Iterable[Metric]:
        return self.collect()


def register_build_info(registry: CollectorRegistry, *, version: str | None = None) -> None:
    registry.register(BuildInfoCollector(version))


def register_process_metrics(registry: CollectorRegistry) -> None:
    """process_* (CPU, memory, fds, start time), python_info and python_gc_* on ``registry``."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
