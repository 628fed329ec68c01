"""kukeond's lifecycle: start the pieces in dependency order, stop them in reverse.

```
etcd (embedded, or the configured endpoints) -> Registry -> bootstrap defaults
containerd client -> cgroup driver -> space networks -> Operator + controllers
API server (unix socket, optional TCP) and the /metrics endpoint
```

Stopping (SIGTERM/SIGINT) stops taking work, lets running handlers finish, and closes the
connections; it never touches the workloads: tasks keep running under their shims, as
pods do when kubelet restarts, and the next start adopts them (nothing is remembered in
memory, everything is re-derived from etcd and the host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry

from kukeon.api import Kind
from kukeon.controllers import (
    Controllers,
    Host,
    HostSettings,
    ImageArchives,
    ImageProvider,
    register_controllers,
)
from kukeon.controllers.images import ImageStorageLimits
from kukeon.framework import EventRecorder, Operator, Settings
from kukeon.framework.aiotasks import SupervisedTask, Supervisor
from kukeon.metrics.latency import RequestLatencyMetrics, request_latency_for
from kukeon.runtime.cgroups import CgroupDriver, CgroupError, open_driver
from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdUnavailableError
from kukeon.runtime.containerd.layersize import UnpackLimits
from kukeon.runtime.containerd.zstdwindow import WINDOWS
from kukeon.runtime.hostthreads import close_host_threads, open_host_threads, run_on_host_thread
from kukeon.runtime.idranges import IdRangeError
from kukeon.runtime.network import NetworkSettings, NftEgress, SpaceNetworks
from kukeon.store import EmbeddedEtcd, EtcdConfig, Registry
from kukeon.store.encryption import Keyring
from kukeon.store.events import EventStore
from kukeon.store.realmquota import QuotaLimits, RealmQuotas
from kukeon.store.spacekeeping import keep_space

from . import gcpolicy, instancelock, memdebug, nodename
from .bootstrap import ensure_defaults
from .config import DaemonConfig
from .cpleftovers import discard_dead_uploads
from .endpoints import api_settings, cell_admission
from .hostdirs import claim_host_directories, prepare_host_directories
from .node import Fleet, start_fleet
from .nodefacts import disk_pressure_inode_reserve, disk_pressure_reserve
from .pidslimits import host_pids_limit, own_cgroups_inside, root_pids_limit
from .starterrors import StartupError

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

Stopper = Callable[[], Awaitable[Any]]
STOP_STEP_SECONDS = 20.0
STOP_BUDGET_SECONDS = 25.0
"""The whole stop, within systemd's TimeoutStopSec (30 s in hack/kukeond.service)."""
STOP_LAST_CHANCE_SECONDS = 1.0
CONTAINERD_START_WAIT_SECONDS = 30.0
"""How long kukeond's start waits for containerd to answer (it may be starting beside it)."""
"""What each step left once the budget is spent still gets (the etcd child must go)."""


def etcd_config(
    config: DaemonConfig,
    *,
    endpoints: tuple[str, ...],
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> EtcdConfig:
    return EtcdConfig(
        interceptors=tuple(interceptors),
        endpoints=endpoints,
        ca_file=config.etcd_ca_file,
        cert_file=config.etcd_cert_file,
        key_file=config.etcd_key_file,
        username=config.etcd_username,
        password=config.etcd_password,
        key_prefix=config.etcd_prefix,
    )


def realm_pids_limit(configured: int | None) -> int | None:
    """Each realm's default `pids.max` on this node: as configured (0: none), else half of
    what the kernel allows in all (a fork bomb in one realm leaves the host the rest)."""
    if configured is not None:
        return configured or None
    allowed = host_pids_limit()
    return max(allowed // 2, 1) if allowed is not None else None


def host_settings(config: DaemonConfig, *, root_pids_limit: int | None) -> HostSettings:
    return HostSettings(
        node_name=config.node_name,
        state_dir=config.state_dir,
        cni_conf_dir=config.cni_conf_dir,
        insecure_registries=config.insecure_registries,
        stop_grace_seconds=config.stop_grace_seconds,
        parent_wait_seconds=config.parent_wait_seconds,
        realm_pids_limit=realm_pids_limit(config.realm_pids_limit),
        root_pids_limit=root_pids_limit,
        id_pool=config.id_pool,
        id_claims_dir=config.user_namespace_claims_dir,
        log_rotation=config.log_rotation,
        allowed_host_paths=tuple(str(path) for path in config.allowed_host_paths),
    )


async def claim_recorded_ranges(host: Host) -> None:
    """Claim host-wide the user-namespace ranges this installation recorded (the first
    start after an upgrade claims those of before), before any other installation picks a
    range, and say a clash with another's. A failure only logs: the realms' cells report
    it when they need their range."""
    try:
        refused = await run_on_host_thread(host.settings.id_ranges().claim_recorded)
    except IdRangeError as error:
        log.error("cannot claim this node's user-namespace ranges host-wide: %s", error)
        return
    if refused:
        log.error(
            "%d realm(s) of this node share user-namespace ids with another installation "
            "that claimed them first; their hostUsers: false cells are refused (above)",
            len(refused),
        )


def operator_settings(config: DaemonConfig, *, host_identity: str, lease_ttl: int) -> Settings:
    return Settings(
        node_name=config.node_name,
        host_identity=host_identity,
        lease_ttl=lease_ttl,
        backoff_initial=config.retry_backoff_initial_seconds,
        backoff_max=config.retry_backoff_max_seconds,
    )


async def limit_kukeon_root(config: DaemonConfig, cgroups: CgroupDriver) -> int | None:
    """The kukeon root's `pids.max` (what every realm together may have), set now if the
    root is there (realms from before a restart); the realm controller makes the root with
    it and keeps it so. Returns the limit."""
    limit = root_pids_limit(config.host_reserved_pids, host_pids_limit())
    inside = own_cgroups_inside(config.cgroup_root)
    if inside:
        log.warning(
            "kukeond runs inside its own cgroup root %s (%s): its processes count against "
            "what the realms may have, not against hostReservedPids",
            config.cgroup_root,
            " ".join(inside),
        )
    try:
        state = await cgroups.limit_existing_root(pids_max=limit)
    except CgroupError:
        # Each realm's reconcile sets it again and reports a failure in its status.
        log.exception("cannot set the pids limit of the cgroup root %s", config.cgroup_root)
        return limit
    if state is not None:
        log.info(
            "cgroup root %s: pids.max %s for every realm together",
            state.path,
            state.limits.get("pids.max", "(no pids controller)"),
        )
    return limit


@dataclass
class Daemon:
    """One kukeond: what it started, so that `stop` undoes exactly that."""

    config: DaemonConfig
    metrics_registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    registry: Registry | None = None
    operator: Operator | None = None
    controllers: Controllers | None = None
    containerd: ContainerdClient | None = None
    fleet: Fleet | None = None
    events: EventStore | None = None
    """The Events in etcd: the controllers write them, the API lists and watches them."""
    metrics_url: str | None = None
    api_app: web.Application | None = None
    """The API server's application once it serves (its router lists every route)."""
    _stoppers: list[tuple[str, Stopper]] = field(default_factory=list)

    @property
    def latency(self) -> RequestLatencyMetrics:
        """etcd and containerd request histograms (one shared set per metrics registry)."""
        return request_latency_for(self.metrics_registry)

    def _on_stop(self, what: str, stopper: Stopper) -> None:
        self._stoppers.append((what, stopper))

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self.config
        # 0750 and root's (the run directory the API socket's group's too); whatever an
        # older version left wider (0644 logs) is narrowed.
        await asyncio.to_thread(
            prepare_host_directories, config, socket_group=api_settings(self).socket_group
        )

        interceptors = self.latency.etcd_interceptors()
        if config.uses_embedded_etcd:
            # Mutual TLS with its own certificates; dies with kukeond, restarted if it dies alone.
            embedded = EmbeddedEtcd(data_dir=config.state_dir / "etcd", restart_on_exit=True)
            await embedded.start()
            self._on_stop("embedded etcd", embedded.stop)
            log.info("embedded etcd started at %s", embedded.endpoint)
            store = embedded.config(interceptors=tuple(interceptors), key_prefix=config.etcd_prefix)
        else:
            for endpoint in config.plaintext_etcd_endpoints:
                log.warning(
                    "etcd endpoint %s is plaintext with no credential (etcdAllowInsecure): "
                    "whoever reaches it (on loopback every local user) reads and writes "
                    "every document",
                    endpoint,
                )
            store = etcd_config(config, endpoints=config.etcd_endpoints, interceptors=interceptors)
        keyring = await asyncio.to_thread(self._keyring)
        registry = await Registry.connect(store, keyring=keyring)
        self.registry = registry
        self._on_stop("etcd connection", registry.close)
        self.events = EventStore(
            client=registry.client, config=registry.config, ttl=config.event_ttl_seconds
        )
        self._enforce_quotas(registry)

        if config.bootstrap:
            created = await ensure_defaults(registry)
            if created:
                log.info("bootstrap created %s", ", ".join(created))

        if not config.api_only:
            await self._start_controllers(registry)
        await self._start_endpoints(registry)

    def _enforce_quotas(self, registry: Registry) -> None:
        """The realms' quotas (``store.realmquota``): an index of every realm's objects,
        listed in the background and followed from then on. The start does not wait for
        the list (a large etcd takes a while to read): a write that comes first waits for
        it (the store's retry budget), then is answered 503."""
        config = self.config
        quotas = RealmQuotas(
            client=registry.client,
            config=registry.config,
            layout=registry.layout,
            defaults=QuotaLimits(
                config.realm_quota_objects or None, config.realm_quota_storage_bytes or None
            ),
        )
        registry.enforce_quotas(quotas)
        supervisor = Supervisor()
        supervisor.start("kukeon-realm-usage", quotas.run, component="store")
        self._on_stop("realm usage index", supervisor.stop)

    def _keyring(self) -> Keyring:
        """The encryption keys, generated at the first start when the file is missing."""
        config = self.config
        path = config.encryption_keys_path
        # An unusable file (malformed, readable by others) stops the start: EncryptionError.
        keyring, created = Keyring.load_or_create(path)
        if created:
            log.info("generated the encryption key file %s (key %s)", path, keyring.current)
            if not config.uses_embedded_etcd:
                log.warning(
                    "generated a new encryption key file %s while using a shared etcd: every "
                    "node of a fleet needs the same file (copy it to the others, or give "
                    "--encryption-key-file), or Secrets sealed on one node will not open on "
                    "another; see docs/fleet.md",
                    path,
                )
        return keyring

    async def _claimed_node_name(self, registry: Registry, lease_ttl: int) -> str:
        """This installation's identity, once no other holds the node name (``nodename``)."""
        where = nodename.host_identity(self.config.state_dir)
        await nodename.check_node_name(
            registry.client,
            registry.key_prefix,
            node_name=self.config.node_name,
            host=where,
            ttl=lease_ttl,
        )
        return where

    def _containerd_client(self) -> ContainerdClient:
        config = self.config
        # The layers read through this client take their zstd windows from the process's
        # budget (runtime.containerd.zstdwindow).
        WINDOWS.resize(config.image_zstd_window_budget_bytes)
        return ContainerdClient(
            str(config.containerd_address),
            interceptors=self.latency.containerd_interceptors(),
            unpack_limits=UnpackLimits(
                max_bytes=config.image_unpacked_max_bytes,
                reserve=disk_pressure_reserve,
                inode_reserve=disk_pressure_inode_reserve,
            ),
        )

    async def _connect_containerd(self) -> ContainerdClient:
        """The containerd client, once containerd answers (closed at the stop)."""
        containerd = self._containerd_client()
        self.containerd = containerd
        self._on_stop("containerd connection", containerd.close)
        try:
            version = await containerd.wait_ready(within=CONTAINERD_START_WAIT_SECONDS)
        except ContainerdUnavailableError as error:
            # Down, or not installed: its operator's to start; systemd starts kukeond again.
            raise StartupError(
                f"containerd did not answer within {CONTAINERD_START_WAIT_SECONDS:g} s "
                f"(--containerd-address): {error}"
            ) from None
        log.info("containerd %s at %s", version.version, self.config.containerd_address)
        return containerd

    async def _start_controllers(self, registry: Registry) -> None:
        config = self.config
        lease_ttl = min(15, config.node_lease_ttl)
        where = await self._claimed_node_name(registry, lease_ttl)
        # Slow host operations (cgroup and netns removal...) get threads of their own,
        # stopped after everything that uses them (runtime.hostthreads).
        open_host_threads()
        self._on_stop("host threads", close_host_threads)
        containerd = await self._connect_containerd()

        cgroups = open_driver(root=config.cgroup_root)
        root_limit = await limit_kukeon_root(config, cgroups)
        networks = SpaceNetworks(
            settings=NetworkSettings(
                state_dir=config.state_dir,
                cni_plugin_dirs=config.cni_bin_dirs,
                subnet_pool=config.subnet_pool,
                netns_dir=config.netns_dir,
                nft_table=config.nft_table,
                instance=config.instance,
            ),
            egress=NftEgress(
                table=config.nft_table, cell_connections_limit=config.cell_connections_limit
            ),
        )
        host = Host(
            settings=host_settings(config, root_pids_limit=root_limit),
            containerd=containerd,
            cgroups=cgroups,
            networks=networks,
        )
        await claim_recorded_ranges(host)
        images = ImageProvider(
            containerd=containerd,
            archives=ImageArchives(config.state_dir / "images"),
            insecure_registries=config.insecure_registries,
            storage=ImageStorageLimits(
                realm=config.realm_image_storage_bytes or None,
                node=config.image_storage_max_bytes or None,
            ),
            instance=config.instance,
        )
        operator = Operator(
            registry,
            # Leader leases (the scheduler's) expire no later than a node's heartbeat lease.
            settings=operator_settings(config, host_identity=where, lease_ttl=lease_ttl),
            collector_registry=self.metrics_registry,
        )
        assert self.events is not None
        # What happened to each object, written beside the handlers, never awaited by them.
        recorder = EventRecorder(
            sink=self.events, node_name=config.node_name, metrics=operator.metrics
        )
        for kind in (Kind.REALM, Kind.SPACE, Kind.STACK, Kind.CELL, Kind.CELL_SET):
            operator.on_change(kind, recorder.object_changed)  # a deleted object's Events go
        self.controllers = register_controllers(
            operator,
            host=host,
            registry=registry,
            images=images,
            recorder=recorder,
            collector_registry=self.metrics_registry,
        )
        # Fleet membership (issue 10): Node document, heartbeat lease, scheduler singleton.
        self.fleet = await start_fleet(
            operator,
            registry=registry,
            config=config,
            containerd=containerd,
            cells=self.controllers.departures,
            recorder=recorder,
            admission=cell_admission(registry, api_settings(self)),
        )
        self._on_stop("node heartbeat", self.fleet.stop)
        await operator.start()
        self.operator = operator
        self._on_stop("controllers", operator.stop)
        # Dead sessions' tar processes were ended by the start; no upload runs before the API.
        await self._discard_dead_uploads(operator, containerd)
        log.info("controllers started on node %s", config.node_name)

    async def _discard_dead_uploads(self, operator: Operator, containerd: ContainerdClient) -> None:
        """What killed uploads staged, removed; the journals of containers that run no task
        followed until one does or is deleted (`cpleftovers.KeptUploads`)."""
        kept = await discard_dead_uploads(self.config.state_dir, containerd)
        if kept.journals:
            following = operator.tasks.start(
                "kukeon-cp-leftovers", kept.follow, component="daemon", finishable=True
            )
            self._on_stop("cp leftovers", lambda: operator.tasks.stop([following]))

    async def _start_endpoints(self, registry: Registry) -> None:
        """The API server and /metrics; wired in by their own modules when present."""
        from kukeon.daemon.endpoints import start_endpoints

        await start_endpoints(self, self._on_stop)

    async def stop(self) -> None:
        """Undo `start` in reverse; every step runs even if an earlier one fails or hangs.

        Each step gets at most ``STOP_STEP_SECONDS`` and all of them ``STOP_BUDGET_SECONDS``
        (a step after the budget is spent still gets ``STOP_LAST_CHANCE_SECONDS``): a daemon
        that never exits is worse than one that leaves a step undone, since everything
        kukeond holds is rebuilt from etcd and the host at the next start (as after a kill -9).
        """
        loop = asyncio.get_running_loop()
        budget_ends = loop.time() + STOP_BUDGET_SECONDS
        while self._stoppers:
            what, stopper = self._stoppers.pop()
            allowed = max(
                min(STOP_STEP_SECONDS, budget_ends - loop.time()), STOP_LAST_CHANCE_SECONDS
            )
            try:
                async with asyncio.timeout(allowed):
                    await stopper()
            except TimeoutError:
                log.error("stopping %s took over %.3gs; going on without it", what, allowed)
            except Exception:
                log.exception("stopping %s failed", what)
            else:
                log.info("stopped %s", what)


async def run_daemon(config: DaemonConfig) -> None:
    """Start kukeond and run until SIGTERM or SIGINT. Before anything else, this process
    holds its state and run directories (``instancelock``: ``AlreadyRunningError``), once
    it knows no other account may change them (the lock files are made in them)."""
    claim_host_directories(config)
    with instancelock.held((config.state_dir, config.run_dir)):
        await _run_daemon(config)


async def _run_daemon(config: DaemonConfig) -> None:
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    uninstall_heap_reports = memdebug.install(loop, config.state_dir)
    daemon = Daemon(config)
    maintenance: list[SupervisedTask] = []
    try:
        await daemon.start()
        gcpolicy.apply_after_startup()
        if daemon.operator is not None:
            # Supervised like every long-lived loop: restarted after a crash, on /metrics.
            tasks = daemon.operator.tasks
            maintenance = [
                tasks.start(
                    "kukeon-full-collections", gcpolicy.collect_fully_every, component="memory"
                ),
                tasks.start("kukeon-young-sweeps", gcpolicy.sweep_young_every, component="memory"),
            ]
            if config.uses_embedded_etcd and daemon.registry is not None:
                client = daemon.registry.client
                maintenance.append(
                    tasks.start("kukeon-etcd-space", lambda: keep_space(client), component="store")
                )
        log.info("kukeond ready (API socket %s)", config.api_socket)
        await stop_requested.wait()
        log.info("stopping; workloads keep running")
    finally:
        for task in maintenance:
            await task.stop()
        with contextlib.suppress(Exception):
            await daemon.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        uninstall_heap_reports()
