"""prometheus-client's metrics and registry, without running the package's ``__init__``
(issue 18).

That ``__init__`` imports ``prometheus_client.exposition`` for its re-exports, and with it
``http.server``, ``socketserver``, ``wsgiref``, ``urllib.request``'s opener and the ASGI
app (the standalone HTTP servers, the push-gateway client): ~0.45 MB of objects kukeond held
for as long as it ran (docs/benchmarks/memory-idle.md), while it scrapes through its own
renderer (``kukeon.metrics.exposition``) and uses prometheus-client's ``generate_latest``
only for the API's ``/metrics`` (imported at its first request, ``kukeon.apiserver.app``).
So the package is registered with its ``__init__`` not run (``kukeon.leanpackage``): the
names kukeond takes from it come from the submodules that define them (``SERVED``), and any
other name runs the ``__init__`` then.

The ``__init__`` also imports the process, platform and GC collector modules, each of which
registers its collector in the default ``REGISTRY`` at import: those are imported here too,
so the default registry is what it would be.

``kukeon.daemon``'s ``__init__`` runs this before any of kukeond's modules imports
prometheus-client; when it is imported already (a test process), nothing changes.
"""

from __future__ import annotations

import importlib
from typing import Final

from kukeon.leanpackage import register_without_init as register_package

PACKAGE: Final = "prometheus_client"
SERVED: Final = {
    "CollectorRegistry": "prometheus_client.registry",
    "REGISTRY": "prometheus_client.registry",
    "Counter": "prometheus_client.metrics",
    "Gauge": "prometheus_client.metrics",
    "Histogram": "prometheus_client.metrics",
    "GCCollector": "prometheus_client.gc_collector",
    "PlatformCollector": "prometheus_client.platform_collector",
    "ProcessCollector": "prometheus_client.process_collector",
}
"""Names of the package that kukeond's modules import from it, and where they are defined."""
DEFAULT_COLLECTORS: Final = (
    "prometheus_client.gc_collector",
    "prometheus_client.platform_collector",
    "prometheus_client.process_collector",
)
"""The modules whose import registers a collector in the default ``REGISTRY``."""


def register_without_init() -> None:
    """Put ``prometheus_client`` in ``sys.modules`` with its ``__init__`` not run (see the
    module), and its default collectors registered as that ``__init__`` would."""
    if register_package(PACKAGE, SERVED):
        for module in DEFAULT_COLLECTORS:
            importlib.import_module(module)
