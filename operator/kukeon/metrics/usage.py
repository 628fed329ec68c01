"""What each cell of this node uses, read from its cgroup at scrape time.

``kukeon_cell_cpu_seconds_total`` (CPU time, a counter: ``rate()`` of it is cores),
``kukeon_cell_memory_bytes`` (the working set: usage less the inactive file cache, what
``kubectl top`` shows), ``kukeon_cell_memory_limit_bytes`` (only for a cell whose every
running container has a memory limit: their sum) and ``kukeon_cell_pids`` (tasks),
labelled ``realm, space, stack, cell, node`` as the other cell series are.

This package never touches the host: the daemon passes a ``UsageSource`` that reads the
cgroups (``kukeon.daemon.usage.ScrapeSampler``), called once per scrape from the thread
rendering ``/metrics``. A cell that stops running has no cgroup, so its series end, as
a deleted cell's do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .collector import CELL_LABELS


class CellUsageSample(NamedTuple):
    realm: str
    space: str
    stack: str
    cell: str
    node: str
    cpu_seconds: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    pids: int | None

    @property
    def labels(self) -> list[str]:
        return [self.realm, self.space, self.stack, self.cell, self.node]


UsageSource = Callable[[], Sequence[CellUsageSample]]


def _families() -> tuple[
    CounterMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily
]:
    labels = list(CELL_LABELS)
    return (
        CounterMetricFamily(
            "kukeon_cell_cpu_seconds",
            "CPU time used by the cell's processes since its cgroup was made (cgroup "
            "cpu.stat usage_usec on v2, cpuacct.usage on v1); rate() of it is cores.",
            labels=labels,
        ),
        GaugeMetricFamily(
            "kukeon_cell_memory_bytes",
            "The cell's memory working set: its cgroup's usage less the inactive file cache.",
            labels=labels,
        ),
        GaugeMetricFamily(
            "kukeon_cell_memory_limit_bytes",
            "The cell's memory limit: the sum of its running containers' limits, present "
            "only when every one of them has one.",
            labels=labels,
        ),
        GaugeMetricFamily(
            "kukeon_cell_pids",
            "Tasks (processes and threads) in the cell's cgroup (pids.current).",
            labels=labels,
        ),
    )


class CellUsageCollector(Collector):
    """The usage series of the cells ``source`` reports (this node's running cells)."""

    def __init__(self, source: UsageSource) -> None:
        self._source = source

    def describe(self) -> Iterable[Metric]:
        # Names only, so registering never reads a cgroup.
        return list(_families())

    def collect(self) -> Iterable[Metric]:
        cpu, memory, limit, pids = _families()
        seen: set[tuple[str, ...]] = set()
        for sample in self._source():
            key = (sample.realm, sample.space, sample.stack, sample.cell)
            if key in seen:  # a duplicate series would make the whole scrape invalid
                continue
            seen.add(key)
            labels = sample.labels
            if sample.cpu_seconds is not None:
                cpu.add_metric(labels, sample.cpu_seconds)
            if sample.memory_bytes is not None:
                memory.add_metric(labels, float(sample.memory_bytes))
            if sample.memory_limit_bytes is not None:
                limit.add_metric(labels, float(sample.memory_limit_bytes))
            if sample.pids is not None:
                pids.add_metric(labels, float(sample.pids))
        return [cpu, memory, limit, pids]
