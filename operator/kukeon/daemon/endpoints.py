"""The daemon's listeners: the API server (with this node's routes) and /metrics.

Kept apart from `app` so the lifecycle reads as a list of pieces. With `--api-only` the
API server runs without the node routes (it has no containerd) and without controllers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from kukeon.apiserver import ApiServerError, ApiSettings, build_runner
from kukeon.apiserver.admission import Admission
from kukeon.apiserver.app import WATCH_CACHE_KEY, ReadinessCheck
from kukeon.apiserver.events import EventRoutes
from kukeon.apiserver.watchcache import CACHED_KINDS
from kukeon.controllers.cellsets import CellAdmission
from kukeon.framework.aiotasks import Supervisor
from kukeon.metrics.daemon import DaemonMetrics
from kukeon.metrics.endpoint import MetricsServer, serve_metrics
from kukeon.metrics.usage import CellUsageCollector
from kukeon.runtime.containerd.speccheck import runnable_problems
from kukeon.store import Registry
from kukeon.store.spacekeeping import space_ready
from kukeon.ui.routes import UiRoutes

from .forwarding import Forwarder
from .hostdirs import share_run_dir
from .keyroutes import KeyRotationRoutes
from .metricslistener import listen_when_free, squatters
from .metricstoken import (
    generated_metrics_token,
    read_metrics_token,
    requiring_token,
    warn_open_listener,
)
from .node import FLEET
from .noderoutes import NodeRoutes
from .peerfence import etcd_reach_route
from .starterrors import StartupError
from .statsroutes import StatsRoutes
from .usage import ScrapeSampler, UsageReader

if TYPE_CHECKING:
    from .app import Daemon

log = logging.getLogger(__name__)

Stopper = Callable[[], Awaitable[Any]]


def api_settings(daemon: Daemon) -> ApiSettings:
    config = daemon.config
    return ApiSettings(
        socket_path=config.api_socket,
        tcp_address=config.api_address,
        max_tcp_connections=config.api_max_connections,
        tls_cert_file=config.api_tls_cert_file,
        tls_key_file=config.api_tls_key_file,
        tokens_file=config.api_tokens_file,
        socket_group=config.api_socket_group or None,
        allowed_host_paths=tuple(str(path) for path in config.allowed_host_paths),
        secret_dirs=tuple(str(path) for path in config.secret_dirs),
        allowed_secret_env=config.allowed_secret_env,
        insecure_registries=config.insecure_registries,
        max_requests_inflight=config.api_max_requests_inflight,
        max_long_running_per_user=config.api_max_long_running_per_user,
        max_long_running=config.api_max_long_running,
        realm_write_bytes_per_second=config.realm_write_bytes_per_second,
        realm_write_burst_bytes=config.realm_write_burst_bytes,
    )


def cell_admission(registry: Registry, settings: ApiSettings) -> CellAdmission:
    """What the cell set controller asks before it creates a set's cells: the API server's
    own admission, with the host allowances it admits writes with."""
    admission = Admission(
        registry=registry,
        allowances=settings.host_allowances,
        listed_registries=settings.insecure_registries,
    )
    return admission.cell_refusal


async def start_endpoints(daemon: Daemon, on_stop: Callable[[str, Stopper], None]) -> None:
    """Start the listeners, each one's stop handed to ``on_stop`` as soon as it runs (a
    later failure stops what started before it). An address in use or another server on
    the socket is a ``StartupError``."""
    assert daemon.registry is not None
    config = daemon.config

    operator = daemon.operator
    client, embedded = daemon.registry.client, config.uses_embedded_etcd
    # A full etcd answers reads: the `etcd` check passes while no write is taken.
    checks: dict[str, ReadinessCheck] = {
        "etcd-space": lambda: space_ready(client, embedded=embedded)
    }
    if not config.api_only:

        def controllers_ready() -> bool:
            # Not ready while any supervised loop (a kind's watch, the event follower...)
            # is down after a crash: the failure names it.
            return operator is not None and operator.ready()

        checks["controllers"] = controllers_ready
        if operator is not None and daemon.fleet is not None:
            checks["fleet"] = operator.tasks.readiness(FLEET)
        if daemon.fleet is not None:
            checks["runtime"] = daemon.fleet.agent.runtime_ready
            checks["node"] = daemon.fleet.agent.document_ready

    try:
        runner = await build_runner(
            settings=api_settings(daemon),
            registry=daemon.registry,
            metrics_registry=daemon.metrics_registry,
            readiness_checks=checks,
            container_check=runnable_problems,
        )
    except ApiServerError as error:  # the tokens or TLS files, the listener's settings
        raise StartupError(str(error)) from error
    metrics = await _start_metrics(daemon, runner.app, on_stop)
    if daemon.controllers is not None:
        NodeRoutes(
            controllers=daemon.controllers,
            registry=daemon.registry,
            image_import_max_bytes=config.image_import_max_bytes,
        ).add_routes(runner.app)
        # kukectl top and the kukeon_cell_* usage series: the cells' cgroups, read when asked.
        usage = UsageReader(cgroups=daemon.controllers.host.cgroups, node_name=config.node_name)
        StatsRoutes(registry=daemon.registry, reader=usage).add_routes(runner.app)
        sampler = ScrapeSampler(reader=usage, cache=metrics.cache, loop=asyncio.get_running_loop())
        daemon.metrics_registry.register(CellUsageCollector(sampler))
    UiRoutes().add_routes(runner.app)  # the web console at /ui/ (kukeon.ui)
    if daemon.events is not None:  # list and watch, --api-only too
        settings = api_settings(daemon)
        EventRoutes(
            store=daemon.events,
            bookmark_interval=settings.bookmark_interval,
            watch_start_grace=settings.watch_start_grace,
            request_timeout=settings.request_timeout,
        ).add_routes(runner.app)
    _add_key_rotation(daemon, runner.app)
    await _start_forwarding(daemon, runner.app, on_stop)
    try:
        await runner.start()
    except ApiServerError as error:
        raise StartupError(str(error)) from error
    on_stop("API server", runner.stop)
    daemon.api_app = runner.app
    # The socket's group exists now (the runner creates it): it may reach the socket.
    await asyncio.to_thread(share_run_dir, config.run_dir, api_settings(daemon).socket_group)
    if daemon.fleet is not None:  # other nodes find this API in Node.status.apiEndpoint
        await daemon.fleet.agent.set_api_port(runner.tcp_port)


async def _start_forwarding(
    daemon: Daemon, app: web.Application, on_stop: Callable[[str, Stopper], None]
) -> None:
    """Requests for cells of other nodes go to those nodes (daemon/forwarding.py); the same
    client asks the other nodes whether they reach etcd before this node fences, and the
    route answers theirs (daemon/peerfence.py)."""
    assert daemon.registry is not None
    config = daemon.config
    forwarder = Forwarder(
        registry=daemon.registry,
        node_name=config.node_name,
        token_file=config.fleet_token_file,
        ca_file=config.fleet_ca_file,
        server_domain=config.fleet_tls_server_domain,
    )
    await forwarder.start()
    on_stop("fleet forwarding", forwarder.close)
    if daemon.fleet is not None:
        etcd_reach_route(daemon.registry, config.node_name).add_routes(app)
        daemon.fleet.agent.peers.forwarder = forwarder
    forwarder.install(app, serves_cells=daemon.controllers is not None)


def _add_key_rotation(daemon: Daemon, app: web.Application) -> None:
    """rotate-key, when the keys come from a file; it warns of one cut short (keyroutes)."""
    assert daemon.registry is not None
    if (keyring := daemon.registry.keyring) is not None:
        KeyRotationRoutes(
            registry=daemon.registry,
            keyring=keyring,
            state_dir=daemon.config.state_dir,
            metrics_registry=daemon.metrics_registry,
        ).add_routes(app)


async def _start_metrics(
    daemon: Daemon, app: web.Application, on_stop: Callable[[str, Stopper], None]
) -> DaemonMetrics:
    """The collectors' informer and the /metrics listener."""
    assert daemon.registry is not None
    config = daemon.config
    # The API server's watch cache holds the kinds the collectors read but Secrets: one
    # list + watch and one copy of each document for both (it lists once the runner starts).
    watch_cache = app.get(WATCH_CACHE_KEY)
    metrics = DaemonMetrics(
        registry=daemon.metrics_registry,
        store=daemon.registry,
        node_name=config.node_name,
        invalid_documents=daemon.registry.invalid_documents,
        shared=watch_cache,
        shared_kinds=CACHED_KINDS if watch_cache is not None else (),
    )
    await metrics.start()
    on_stop("metrics informer", metrics.stop)
    await _listen_for_metrics(daemon, on_stop)
    return metrics


async def _listen_for_metrics(daemon: Daemon, on_stop: Callable[[str, Stopper], None]) -> None:
    """The /metrics listener; its address in use is a ``StartupError``, unless only other
    accounts' listeners hold it: then it is listened on once free (a supervised task)."""
    address = daemon.config.metrics_address
    # The node's cells reach its addresses whatever their space's egress policy, and the
    # series name every realm's objects: no cell of this node is answered (endpoint.py).
    cells = (daemon.config.subnet_pool,)
    guard = await _metrics_guard(daemon)
    if guard is None:
        warn_open_listener(address)
    try:
        server = await serve_metrics(
            address, registry=daemon.metrics_registry, refused=cells, guard=guard
        )
    except OSError as error:
        holders = await asyncio.to_thread(squatters, address, error)
        if holders is None:
            raise StartupError(f"{error.strerror} (--metrics-address)") from error
        # A local user's listener must not keep kukeond down (daemon/metricslistener.py).
        log.error(
            "cannot listen for /metrics on %s: %s holds it, not root: kukeond starts without "
            "it and listens there once it is free (the API's /metrics serves the same)",
            address,
            holders,
        )

        def listening(bound: MetricsServer) -> None:
            daemon.metrics_url = bound.url

        supervisor = Supervisor()
        supervisor.start(
            "kukeon-metrics-listener",
            partial(
                listen_when_free,
                address,
                daemon.metrics_registry,
                listening=listening,
                refused=cells,
                guard=guard,
            ),
            component="endpoints",
        )
        on_stop("metrics endpoint", supervisor.stop)
        return
    daemon.metrics_url = server.url
    on_stop("metrics endpoint", server.stop)


async def _metrics_guard(daemon: Daemon) -> Middleware | None:
    """The /metrics listener's token check: ``metrics_token_file``'s token, else the one
    kukeond generates in its state directory; None with ``metrics_open``. An unusable file
    is a ``StartupError`` (``metricstoken.read_metrics_token``)."""
    config = daemon.config
    path = config.metrics_token_path
    if path is None:
        return None
    if config.metrics_token_file is None:
        return requiring_token(await asyncio.to_thread(generated_metrics_token, path))
    return requiring_token(await asyncio.to_thread(read_metrics_token, path))
