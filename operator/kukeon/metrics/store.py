"""``kukeon_registry_invalid_documents{kind}``: documents in etcd the registry skips.

The registry (``kukeon.store``) never imports prometheus-client: it keeps the count of
keys whose document did not decode when last read (``Registry.invalid_documents``), and
this collector reads it at scrape time. A gauge, not a counter: what an operator needs is
"is there something unreadable in etcd now" (it goes back to 0 once the key is deleted or
rewritten valid); each bad version is also logged once, with its key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kukeon.api import Kind

InvalidCounts = Callable[[], Mapping[Kind, int]]


class InvalidDocumentsCollector(Collector):
    """One series per kind, 0 when every document of the kind decodes."""

    def __init__(self, counts: InvalidCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "kukeon_registry_invalid_documents",
            "Keys whose stored document is not a valid resource of its key's kind (skipped "
            "by lists and watches), by kind, as last read by this kukeond.",
            labels=["kind"],
        )
        for kind, count in sorted(self._counts().items()):
            family.add_metric([kind.value], float(count))
        return [family]

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily(
                "kukeon_registry_invalid_documents",
                "Keys whose stored document is not a valid resource of its key's kind.",
                labels=["kind"],
            )
        ]
