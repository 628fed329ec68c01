"""The daemon's listeners: the /metrics endpoint (and the API server, wired in here too).

Kept apart from `app` so the lifecycle reads as a list of pieces, and so the listeners can
be started on their own for `--api-only`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kukeon.metrics.daemon import DaemonMetrics
from kukeon.metrics.endpoint import serve_metrics

if TYPE_CHECKING:
    from .app import Daemon

Stopper = Callable[[], Awaitable[Any]]


async def start_endpoints(daemon: Daemon) -> list[tuple[str, Stopper]]:
    """Start the listeners; returns how to stop each, in start order."""
    assert daemon.registry is not None
    config = daemon.config
    stoppers: list[tuple[str, Stopper]] = []

    metrics = DaemonMetrics(
        registry=daemon.metrics_registry,
        store=daemon.registry,
        node_name=config.node_name,
    )
    await metrics.start()
    stoppers.append(("metrics informer", metrics.stop))
    server = await serve_metrics(config.metrics_address, registry=daemon.metrics_registry)
    stoppers.append(("metrics endpoint", server.stop))
    return stoppers
