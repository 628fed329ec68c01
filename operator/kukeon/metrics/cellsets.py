"""``kukeon_cellset_replicas{realm, space, stack, cellset, kind}``: each CellSet's counts.

Read at scrape time from the informer's document cache, like the hierarchy's series, so
a deleted set's series are gone at the next scrape. ``kind`` is ``desired``
(`spec.replicas`) or one of the set controller's status counts: ``ready``, ``updated``,
``available`` (docs/cellsets.md). Sets are fleet-wide documents: every kukeond reports
them, as realms, spaces and stacks (aggregate with ``max by (...)``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kukeon.api import CellSet, Kind

from .cache import DocumentView

NAME = "kukeon_cellset_replicas"
HELP = (
    "A CellSet's replicas: desired (spec.replicas), and the set controller's ready, "
    "updated (made from the current template) and available counts."
)
LABELS = ["realm", "space", "stack", "cellset", "kind"]


def _family() -> GaugeMetricFamily:
    return GaugeMetricFamily(NAME, HELP, labels=LABELS)


def replica_counts(cellset: CellSet) -> dict[str, int]:
    status = cellset.status
    return {
        "desired": cellset.spec.replicas,
        "ready": status.ready_replicas,
        "updated": status.updated_replicas,
        "available": status.available_replicas,
    }


class CellSetCollector(Collector):
    """Four series per CellSet in the cache."""

    def __init__(self, cache: DocumentView) -> None:
        self._cache = cache

    def describe(self) -> Iterable[Metric]:
        return [_family()]

    def collect(self) -> Iterable[Metric]:
        family = _family()
        for cellset in self._cache.documents(Kind.CELL_SET):
            if not isinstance(cellset, CellSet):
                continue
            spec = cellset.spec
            where = [spec.realm_id, spec.space_id, spec.stack_id, cellset.metadata.name]
            for kind, value in replica_counts(cellset).items():
                family.add_metric([*where, kind], float(value))
        return [family]
