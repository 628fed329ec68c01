"""Prometheus metrics of kukeond and the ``/metrics`` endpoint.

What a scrape answers: is every cell ready (``kukeon_cell_state``,
``kukeon_cell_ready_observed``), what each layer's cgroup really delegates
(``kukeon_subtree_controller_delegated``), how containers behave
(``kukeon_container_restarts_total``, ``kukeon_container_last_exit_code``) and how the
control plane does (the framework's ``kukeon_reconcile_*``, ``kukeon_queue_depth``,
``kukeon_watch_restarts_total``; etcd and containerd call latency here). Every metric is
listed in ``docs/metrics.md``.

Modules: ``cache`` (the informer: list + watch into an in-memory ``DocumentCache``),
``collector`` (series computed at scrape time from that cache, so a deleted object's
series vanish), ``latency`` (histograms, a grpc.aio interceptor and hooks that feed
them), ``process`` (build info, process metrics), ``usage`` (each running cell's CPU, memory and
tasks, from a source the daemon gives it, which reads the cgroups), ``endpoint`` (aiohttp
``/metrics``) and ``daemon`` (all of it on one registry, for kukeond).

This package may import ``kukeon.api``, ``kukeon.store`` and the framework's task
supervisor and metrics (``kukeon.framework.aiotasks``, ``.metrics``); ``kukeon.store`` and
``kukeon.runtime`` never import it: they are fed through interceptors and observer hooks.
"""

from kukeon.metrics.cache import DocumentCache, DocumentInformer, DocumentSource
from kukeon.metrics.collector import (
    CELL_LABELS,
    CONTAINER_LABELS,
    DELEGATION_LABELS,
    HierarchyCollector,
    cell_node,
)
from kukeon.metrics.daemon import DaemonMetrics
from kukeon.metrics.endpoint import (
    DEFAULT_METRICS_ADDRESS,
    MetricsServer,
    metrics_app,
    metrics_handler,
    parse_address,
    serve_metrics,
)
from kukeon.metrics.latency import (
    GrpcLatencyInterceptor,
    LatencyObserver,
    LatencyTimer,
    RequestLatencyMetrics,
    latency_observer,
    observe_latency,
    request_latency_for,
    short_method_name,
)
from kukeon.metrics.process import (
    BuildInfoCollector,
    register_build_info,
    register_process_metrics,
)

__all__ = [
    "CELL_LABELS",
    "CONTAINER_LABELS",
    "DEFAULT_METRICS_ADDRESS",
    "DELEGATION_LABELS",
    "BuildInfoCollector",
    "DaemonMetrics",
    "DocumentCache",
    "DocumentInformer",
    "DocumentSource",
    "GrpcLatencyInterceptor",
    "HierarchyCollector",
    "LatencyObserver",
    "LatencyTimer",
    "MetricsServer",
    "RequestLatencyMetrics",
    "cell_node",
    "latency_observer",
    "metrics_app",
    "metrics_handler",
    "observe_latency",
    "parse_address",
    "register_build_info",
    "register_process_metrics",
    "request_latency_for",
    "serve_metrics",
    "short_method_name",
]
