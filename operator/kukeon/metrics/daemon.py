"""Everything kukeond exposes on ``/metrics``, put together on one registry.

The daemon builds one ``DaemonMetrics``: it registers the hierarchy collector (fed by an
informer over the registry), the request-latency histograms whose interceptors the
etcd and containerd channels take, the CellSets' replica counts, the registry's
invalid-document count, build info,
process metrics and the event loop's lag. The framework registers its own
``kukeon_reconcile_*`` series on the same registry when an ``Operator`` is given it.
``start()``/``stop()`` run the informer and the lag monitor;
the listener is separate (``serve_metrics`` or ``metrics_handler`` on the API server) so
it can live on either.
"""

from __future__ import annotations

from collections.abc import Collection
from types import TracebackType
from typing import Self

from prometheus_client import CollectorRegistry

from kukeon.api import Kind
from kukeon.framework.aiotasks import SupervisedTask, Supervisor
from kukeon.framework.metrics import metrics_for

from .cache import (
    METRICS,
    DocumentCache,
    DocumentInformer,
    DocumentSource,
    DocumentView,
    SharedView,
)
from .cellsets import CellSetCollector
from .collector import COLLECTED_KINDS, HierarchyCollector
from .latency import RequestLatencyMetrics, request_latency_for
from .looplag import LoopLagMonitor
from .process import register_build_info, register_process_metrics
from .store import InvalidCounts, InvalidDocumentsCollector


class DaemonMetrics:
    """The registry's kukeon collectors and the informer that keeps them current."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        store: DocumentSource,
        node_name: str,
        only_node: str | None = None,
        process_metrics: bool = True,
        invalid_documents: InvalidCounts | None = None,
        shared: DocumentView | None = None,
        shared_kinds: Collection[Kind] = (),
    ) -> None:
        """``invalid_documents``: the registry's count of undecodable documents by kind
        (``Registry.invalid_documents``), exported as ``kukeon_registry_invalid_documents``;
        ``shared``: a cache another informer keeps (the API server's watch cache), read for
        ``shared_kinds``, which this one then does not list nor watch."""
        self.registry = registry
        own = DocumentCache()
        if shared is None:
            shared_kinds = ()
        self.cache: DocumentView = (
            SharedView(own=own, shared=shared, shared_kinds=shared_kinds)
            if shared is not None and shared_kinds
            else own
        )
        # Its loops' crashes are counted on this registry (kukeon_task_restarts_total).
        self._supervisor = Supervisor(metrics=metrics_for(registry))
        self.informer = DocumentInformer(
            store=store,
            cache=own,
            kinds=[kind for kind in COLLECTED_KINDS if kind not in shared_kinds],
            supervisor=self._supervisor,
        )
        self.collector = HierarchyCollector(
            cache=self.cache, node_name=node_name, only_node=only_node
        )
        registry.register(self.collector)
        registry.register(CellSetCollector(self.cache))
        if invalid_documents is not None:
            registry.register(InvalidDocumentsCollector(invalid_documents))
        self.latency: RequestLatencyMetrics = request_latency_for(registry)
        register_build_info(registry)
        self.loop_lag: LoopLagMonitor | None = None
        if process_metrics:
            register_process_metrics(registry)
            # A property of the process, like the series above: one per daemon.
            self.loop_lag = LoopLagMonitor(registry)
        self._loop_lag_task: SupervisedTask | None = None

    async def start(self) -> None:
        await self.informer.start()
        if self.loop_lag is not None and self._loop_lag_task is None:
            self._loop_lag_task = self._supervisor.start(
                "kukeon-loop-lag", self.loop_lag.run, component=METRICS
            )

    async def stop(self) -> None:
        await self.informer.stop()
        if self._loop_lag_task is not None:
            task, self._loop_lag_task = self._loop_lag_task, None
            await self._supervisor.stop([task])

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
