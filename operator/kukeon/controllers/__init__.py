"""One controller per kind (realm, space, stack, cell): spec in etcd becomes host state.

Controllers are written with ``kukeon.framework`` and act on the host only through
``kukeon.runtime``. `register_controllers` puts them on an ``Operator``: reconcile and
finalize handlers per kind (cells filtered to the ones this node runs; realms, spaces
and stacks materialised only where cells of them run, see ``layers``, each node holding
its own finalizer), the cell membership (a listener of the operator's cell watch) that
requeues a cell's parents when it is their first on this node or their last to leave it,
the departures follower (another listener of the cell watch) that stops this node's copy
of a cell the moment the cell leaves it (``departures``: moved, drained, fenced), the
containerd event follower that requeues a cell when one of its tasks exits, the Event
recorder (what happened to each object, written to etcd without blocking a handler:
``kukeon.framework.recorder``), the Secret follower that requeues the cells within a
Secret's scope when it changes and the Space listener that requeues a space's cells when
its spec changes (``wakers``), the image waits that requeue the cells failed
``ImageUnavailable`` when an import or pull records their image (``imagewaits``), the nft
keeper that has the node's nft table written again when another process flushed or
changed it (``nftkeeper``), and the orphan collector
(cells, then the realms, spaces and stacks this node does not materialise) run at start
and then periodically. The background loops run under the operator's supervisor
(``Operator.tasks``): a crash is logged, counted, restarted with backoff and shown on
/readyz.

While another kukeond holds this node's name the operator's ``gate`` is closed
(``kukeon.framework.converging``): besides the handlers, the departures, probes, evictions,
hosts files, orphan passes and unreadable-document looks wait, and what runs here is left
as it is. When it opens the stale copies are stopped and an orphan pass runs (what the
departures and the collector would have done meanwhile), beside the operator's resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from prometheus_client import CollectorRegistry

from kukeon.api import (
    SCHEDULED_BY_SCHEDULER,
    AnyResource,
    Cell,
    EventReason,
    EventType,
    Kind,
    key_of,
)
from kukeon.framework import (
    ConvergeGate,
    EventRecorder,
    Operator,
    OperatorContext,
    SupervisedTask,
)
from kukeon.framework.waits import wait_event
from kukeon.store import Registry

from .cell import CellController, HostFacts
from .cellpeers import CellPeers
from .cellports import close_unguarded_bridges
from .departures import Departures
from .ephemeralstorage import StorageLimits
from .events import follow_task_events
from .gc import collect_orphans, container_cell_key, list_node_containers
from .host import Host, HostSettings
from .hostaddresses import HostAddressFollower
from .imagearchives import ImageArchives
from .imagepulls import pulls_needed
from .images import ImageProvider
from .layers import HostLocks, migrate_legacy_finalizers, node_finalizer
from .leaseleftovers import release_abandoned_leases
from .logcopiers import LogCopiers
from .membership import CellMembership
from .nftkeeper import NftKeeper
from .orphanlog import OrphanFailures
from .probing import ProbeManager
from .realm import RealmController
from .sessionleftovers import end_dead_sessions
from .space import SpaceController
from .stack import StackController
from .unreadable import UnreadableCells
from .wakers import CellWaker, secret_scope

__all__ = [
    "CellController",
    "Controllers",
    "Departures",
    "Host",
    "HostFacts",
    "HostSettings",
    "ImageArchives",
    "ImageProvider",
    "register_controllers",
]

log = logging.getLogger(__name__)

GC_INTERVAL_SECONDS = 300.0


class Controllers:
    """The controllers of one node, registered on one operator."""

    def __init__(
        self,
        *,
        host: Host,
        registry: Registry,
        images: ImageProvider,
        recorder: EventRecorder | None = None,
        collector_registry: CollectorRegistry | None = None,
    ) -> None:
        self.host = host
        self.collector_registry = collector_registry
        self.registry = registry
        self.images = images
        self.recorder = recorder
        """Writes the Events the controllers note (started with the background loops)."""
        self.realms = RealmController(host=host)
        self.spaces = SpaceController(host=host)
        self.stacks = StackController(host=host)
        self.layer_locks = HostLocks()
        """Held by a layer controller building or removing a level, and by the orphan
        collector removing a leftover of it: never both at once."""
        for layer in (self.realms, self.spaces, self.stacks):
            layer.locks = self.layer_locks
            layer.recorder = recorder
        self.cells = CellController(
            host=host, registry=registry, images=images, facts=HostFacts.read(), recorder=recorder
        )
        self.departures = Departures(host=host, registry=registry, cells=self.cells)
        if recorder is not None:
            self.departures.say_fenced = lambda cell, message: recorder.event(
                cell, EventReason.FENCED, message, type=EventType.WARNING
            )
        """Stops this node's copy of a cell as soon as the cell leaves it (issue 21)."""
        self.cells.runs_here = self.runs_here
        self._background: list[SupervisedTask] = []
        self.gate = ConvergeGate()
        """The operator's (``register``): closed while another kukeond holds the name."""
        self._reopened = asyncio.Event()
        """Set when the gate opens again: the orphan collector catches up at once."""
        self._orphans_due = asyncio.Event()
        """An orphan pass is due now (the gate reopened, a cell vanished from etcd)."""
        self.departures.vanished = lambda key: self._orphans_due.set()
        self._orphan_pass = asyncio.Lock()
        """One orphan pass at a time: the periodic one, a vanished cell's, an unreadable
        document's, the one at start."""
        self.orphan_passes = 0
        """Orphan passes ended so far."""
        self.orphan_failures = OrphanFailures()
        """What the orphan passes could not remove: warned of once, not every pass."""
        self.unreadable = UnreadableCells(
            registry=registry,
            node_name=host.settings.node_name,
            collect_orphans=self.collect_orphans,
            local_cells=self.local_cells,
            recorder=recorder,
        )
        """Cell documents that cannot be decoded: said in Events and a Node condition."""

    def runs_here(self, cell: Cell) -> bool:
        # Assigned to this node, not being handed back by a drain, not fenced away.
        return self.departures.runs_here(cell)

    async def local_cells(self) -> set[tuple[str, ...]]:
        """The keys of the cells this node has containers of (from their labels)."""
        return {container_cell_key(c) for _, c in await list_node_containers(self.host)}

    async def collect_orphans(self) -> list[str]:
        async with self._orphan_pass:
            try:
                return await collect_orphans(
                    host=self.host,
                    registry=self.registry,
                    cells=self.cells,
                    runs_here=self.runs_here,
                    locks=self.layer_locks,
                    failures=self.orphan_failures,
                )
            finally:
                self.orphan_passes += 1

    async def _collect_at_start(self) -> None:
        """The orphans, then the processes, leases and files of exec sessions and image
        imports a crash cut short (no session or import runs yet: the API listens once the
        controllers are started). No orphan pass while
        another kukeond holds the node's name: the periodic one runs once the name is ours."""
        try:
            removed = await self.collect_orphans() if self.gate.is_open() else []
        except Exception:
            # One orphan that cannot go (a CNI DEL failing) must not keep the node down.
            log.exception("orphan collection at start failed; it runs again periodically")
            removed = []
        if removed:
            log.info("removed %d orphan(s) at start: %s", len(removed), ", ".join(removed))
        await end_dead_sessions(self.host)
        await release_abandoned_leases(self.host)
        try:
            cut_short = await asyncio.to_thread(self.images.archives.remove_interrupted)
        except OSError as error:
            log.warning("removing what interrupted image imports left failed: %s", error)
            return
        if cut_short:
            log.warning(
                "removed %d file(s) of image imports a crash cut short: %s",
                len(cut_short),
                ", ".join(str(path) for path in cut_short),
            )

    async def _collect_periodically(self) -> None:
        """An orphan pass every GC_INTERVAL_SECONDS, none while the gate is closed; at once
        when a cell assigned here vanished from etcd without its deletion; and once the
        gate opens again, at once, after stopping the copies of the cells that left this
        node meanwhile (the departures held back)."""
        while True:
            await wait_event(self._orphans_due, GC_INTERVAL_SECONDS)
            self._orphans_due.clear()
            await self.gate.wait_open()
            try:
                if self._reopened.is_set():
                    self._reopened.clear()
                    await self.departures.stop_stale()
                await self.collect_orphans()
            except Exception:
                log.exception("orphan collection failed; trying again later")

    def _converging_changed(self, opened: bool) -> None:
        if opened:
            self._reopened.set()
            self._orphans_due.set()

    async def _measure_storage(self) -> None:
        storage = self.cells.probes.storage if self.cells.probes is not None else None
        if storage is not None:
            await storage.run()

    def _register_layers(self, op: Operator, membership: CellMembership) -> None:
        """The realm, space and stack handlers: materialised where cells of them run; and
        the keeper of the spaces' nft table."""
        node = self.host.settings.node_name
        for layer in (self.realms, self.spaces, self.stacks):
            layer.trigger = op.trigger
            layer.membership = membership
            op.reconcile(layer.kind)(layer.reconcile)
            # The node's own finalizer is added by the reconcile when it materialises the
            # object here (never by the framework), and released when it tears it down.
            op.finalize(layer.kind, when=_never, finalizer=node_finalizer(layer.kind, node))(
                layer.finalize
            )
        self._follow_host_network(op)

    def _follow_host_network(self, op: Operator) -> None:
        """The nft keeper (``nftkeeper``) and the follower of the node's addresses
        (``hostaddresses``: cells publishing on a hostIP), started and stopped with the
        operator; each ends by itself where the kernel refuses its netlink group (said in
        the log)."""
        keeper = NftKeeper(host=self.host, trigger=op.trigger, recorder=self.recorder, gate=op.gate)
        addresses = HostAddressFollower(host=self.host, registry=self.registry, trigger=op.trigger)
        running: list[SupervisedTask] = []

        @op.on_startup
        async def keep(ctx: OperatorContext) -> None:
            running.append(op.tasks.start("kukeon-nft-keeper", keeper.run, finishable=True))
            running.append(op.tasks.start("kukeon-host-addresses", addresses.run, finishable=True))

        @op.on_shutdown
        async def stop_keeping(ctx: OperatorContext) -> None:
            await op.tasks.stop(running)
            running.clear()

    def _register_cells(self, op: Operator) -> None:
        """A cell runs on its node; once deleted, only its own node tears it down."""
        op.reconcile(Kind.CELL, when=self.runs_here)(self.cells.reconcile)
        departures = self.departures
        op.finalize(Kind.CELL, when=departures.assigned_here, runs=departures.finalizes_here)(
            self.cells.finalize
        )

    def _watch_running_tasks(self, op: Operator) -> None:
        """What the cells' passes hand their running tasks to: probes, log copiers."""
        self.cells.probes = ProbeManager(
            containerd=lambda: self.cells.host.containerd,
            trigger=op.trigger,
            fifo_root=Path(self.host.settings.state_dir) / "probes",
            stop_grace_seconds=self.host.settings.stop_grace_seconds,
            recorder=self.recorder,
            collector_registry=self.collector_registry,
        )
        self.cells.probes.storage = StorageLimits(
            containerd=lambda: self.cells.host.containerd,
            trigger=op.trigger,
            stop_grace_seconds=self.host.settings.stop_grace_seconds,
            recorder=self.recorder,
            state_dir=Path(self.host.settings.state_dir),
        )
        self.cells.log_copiers = LogCopiers(
            recorder=self.recorder,
            collector_registry=self.collector_registry,
            rotation=self.host.settings.log_rotation,
            copier_procs=self.host.cgroups.log_copier_procs,
        )
        self.cells.peers = CellPeers(
            node=self.host.settings.node_name, state_dir=Path(self.host.settings.state_dir)
        )
        op.on_change(Kind.CELL, self.cells.peers.changed)
        # An imported or pulled image requeues this node's cells waiting for it.
        self.cells.image_waits.trigger = op.trigger
        self.images.on_arrival = self.cells.image_waits.arrived
        # A cell's pull runs beside its passes (``imagepulls``): its end wakes the cells
        # that waited; each version of a cell says which pulls it still waits for (a pull
        # nobody waits for is cancelled).
        self.images.pulls.wake = lambda key: op.trigger(Kind.CELL, key)
        op.on_change(Kind.CELL, self._pulls_needed)
        self.departures.runs_here_changed = self._pulls_reconsidered

        @op.on_shutdown
        async def stop_pulls(ctx: OperatorContext) -> None:
            await self.images.pulls.close()  # no pull outlives kukeond

        op.on_change(Kind.CELL, self.cells.image_waits.changed)
        op.on_change(Kind.CELL, self.cells.stop_graces.changed)

    def _pulls_needed(self, obj: AnyResource, deleted: bool) -> None:
        """Every version of a cell, before its pass: the one place it leaves the pulls it no
        longer needs (stopped, deleted, moved or unscheduled, an image changed)."""
        if isinstance(obj, Cell):
            needed = None if deleted else pulls_needed(obj, here=self.runs_here(obj))
            self.images.pulls.need(key_of(obj), needed)

    def _pulls_reconsidered(self, key: tuple[str, ...], cell: Cell | None) -> None:
        """The node fenced (``cell`` None: it runs the cell no more) or unfenced: no new
        version of the cell comes, so what it waits for is judged here."""
        if cell is None:
            self.images.pulls.need(key, frozenset())
        else:
            self._pulls_needed(cell, False)

    def _share_gate(self, op: Operator) -> None:
        """Every host-changing loop here honours the operator's gate."""
        self.gate = op.gate
        self.departures.gate = self.unreadable.gate = op.gate
        probes = self.cells.probes
        if probes is not None:
            probes.gate = op.gate
            if probes.storage is not None:
                probes.storage.gate = op.gate
        if self.cells.peers is not None:
            self.cells.peers.gate = op.gate
        op.gate.listen(self._converging_changed)

    def register(self, op: Operator) -> None:
        node = self.host.settings.node_name
        # The fleet's leader (the scheduler's; ``start_fleet`` registers it) reports every
        # unreadable cell document; without a scheduler this node is alone.
        self.unreadable.leads = lambda: (
            SCHEDULED_BY_SCHEDULER not in op.handlers.singletons
            or op.is_leader(SCHEDULED_BY_SCHEDULER)
        )
        membership = CellMembership(node=node, trigger=op.trigger)
        secrets = CellWaker(
            kind=Kind.SECRET,
            registry=self.registry,
            membership=membership,
            trigger=op.trigger,
            scope_of=secret_scope,
        )
        spaces = CellWaker(
            kind=Kind.SPACE,
            registry=self.registry,
            membership=membership,
            trigger=op.trigger,
            on_spec_change_only=True,
        )
        self._register_layers(op, membership)
        op.on_change(Kind.CELL, membership.changed)
        op.on_change(Kind.CELL, self.departures.changed)
        op.on_change(Kind.SPACE, spaces.changed)
        self.departures.trigger = self.realms.trigger = op.trigger  # realms: limitwakes
        self.departures.requeue = op.requeue
        self._watch_running_tasks(op)
        self._register_cells(op)
        self._share_gate(op)

        @op.on_startup
        async def start_background(ctx: OperatorContext) -> None:
            try:
                migrated = await migrate_legacy_finalizers(self.registry, node=node)
            except Exception:
                log.exception("migrating the shared layer finalizers failed; next start again")
                migrated = []
            if migrated:
                log.info("took over the shared finalizer of %s", ", ".join(migrated))
            await self._collect_at_start()
            await close_unguarded_bridges(self.host)  # a safe setting back, touches no cell
            followed = False

            async def follow_events() -> None:
                nonlocal followed
                if followed:
                    op.resync()  # restarted after a crash: exits may have been missed meanwhile
                followed = True
                await follow_task_events(
                    containerd=self.host.containerd, trigger=op.trigger, resync=op.resync
                )

            peers = self.cells.peers
            self._background = [
                *([self.recorder.start(op.tasks)] if self.recorder is not None else []),
                op.tasks.start("kukeon-containerd-events", follow_events),
                op.tasks.start("kukeon-gc", self._collect_periodically),
                op.tasks.start("kukeon-unreadable-cells", self.unreadable.run),
                op.tasks.start("kukeon-ephemeral-storage", self._measure_storage),
                op.tasks.start("kukeon-secrets", secrets.follow),
                *([op.tasks.start("kukeon-cell-peers", peers.follow)] if peers else []),
            ]

        @op.on_shutdown
        async def stop_background(ctx: OperatorContext) -> None:
            await op.tasks.stop(self._background)
            self._background = []
            await self.departures.stop()  # the copies being stopped, the marks being answered
            if self.cells.probes is not None:
                await self.cells.probes.close()
            if self.cells.log_copiers is not None:
                await self.cells.log_copiers.close()
            if self.recorder is not None:
                # The last Events (a cell deleted just before the stop): a second at most.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.recorder.flush()


def _never(_: object) -> bool:
    return False


def register_controllers(
    op: Operator,
    *,
    host: Host,
    registry: Registry,
    images: ImageProvider,
    recorder: EventRecorder | None = None,
    collector_registry: CollectorRegistry | None = None,
) -> Controllers:
    controllers = Controllers(
        host=host,
        registry=registry,
        images=images,
        recorder=recorder,
        collector_registry=collector_registry,
    )
    controllers.register(op)
    return controllers
