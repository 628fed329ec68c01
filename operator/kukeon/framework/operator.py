"""The ``Operator``: what users register with decorators, and its lifecycle.

An ``Operator`` is built around a store (``kukeon.store.Registry``); controllers
register handlers on it::

    op = Operator(registry, settings=Settings(node_name="host-a"))

    @op.reconcile(Kind.CELL, when=lambda cell: cell.spec.node_name in (None, "host-a"))
    async def reconcile_cell(cell: Cell, ctx: HandlerContext) -> None:
        ...
        await ctx.patch_status(cell, state=CellState.READY)

    @op.finalize(Kind.CELL)
    async def tear_down_cell(cell: Cell, ctx: HandlerContext) -> None: ...

    @op.singleton("scheduler", interval=5.0)
    async def schedule(ctx: OperatorContext) -> None: ...

``start`` runs the startup handlers, lists and watches every kind that has handlers,
starts the timers, the periodic resync, the node heartbeat and one leader election per
singleton, and returns once every kind has been listed. ``stop`` is the graceful
shutdown: watchers first (no new events), then running handlers get
``Settings.shutdown_grace`` seconds before they are cancelled, then singletons and
leases (revoked, so another instance takes over at once), then the shutdown handlers.

While another live kukeond's lease holds this node's name (``heartbeats``) the operator
does not converge: its ``gate`` (``converging``) is closed, the queues start no handler,
the controllers' own loops wait for the gate; when the name is this process's again it
resyncs everything. The heartbeat takes its first claim before the first list, so a
process displaced from its start never reconciles.

Every long-lived task (watchers, timers, resync, heartbeat, elections) runs under the
operator's ``Supervisor`` (``tasks``, shared with the daemon when it passes one): a
crash is logged, counted and restarted with backoff, and ``ready()`` is False meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from kukeon.api import Kind
from kukeon.store import EtcdClient

from .aiotasks import SupervisedTask, Supervisor
from .backoff import retry_delay
from .cache import WatchedObjects
from .converging import ConvergeGate
from .heartbeats import Heartbeat, Peer, alive_peers
from .intents import (
    Filter,
    FinalizeIntent,
    HandlerRegistry,
    ObjectHandler,
    OperatorContext,
    OperatorHandler,
    ReconcileIntent,
    SingletonIntent,
    TimerIntent,
    default_finalizer,
)
from .leases import LeaderElection, LeaderInfo
from .metrics import FrameworkMetrics, metrics_for
from .processing import KeyedLogger, Processor
from .protocols import AnyResource, Store
from .queueing import ChangeListener, ObjectQueues
from .settings import Settings
from .status import finish_even_if_cancelled, patch_status
from .watching import KindWatcher

log = logging.getLogger(__name__)

STOP_EXTRA_SECONDS = 30.0
"""What ``run``'s shutdown may take beyond ``Settings.shutdown_grace`` once cancelled."""

CONTROLLERS = "controllers"
"""The readiness component of the operator's tasks (and the controllers' own)."""

H = TypeVar("H", bound=Callable[..., Coroutine[Any, Any, None]])


class OperatorError(RuntimeError):
    """A misuse of the operator (a second handler for one kind, leases without etcd...)."""


class Operator:
    """Handlers registered by decorator, run against one store."""

    def __init__(
        self,
        registry: Store,
        *,
        settings: Settings | None = None,
        collector_registry: CollectorRegistry | None = None,
        etcd: EtcdClient | None = None,
        peering: bool = True,
        supervisor: Supervisor | None = None,
    ) -> None:
        """``registry``: the store. ``collector_registry``: where the metrics go (the
        global prometheus registry by default). ``etcd``: the client for leases,
        ``registry.client`` when omitted. ``peering``: keep a node heartbeat.
        ``supervisor``: runs the long-lived tasks (one of its own when omitted)."""
        self.store = registry
        self.settings = settings or Settings()
        self.metrics: FrameworkMetrics = metrics_for(collector_registry)
        self.tasks = supervisor if supervisor is not None else Supervisor(metrics=self.metrics)
        """Starts every long-lived task; controllers start theirs here too."""
        client = etcd if etcd is not None else getattr(registry, "client", None)
        self._etcd: EtcdClient | None = client
        self._peering = peering
        self.handlers = HandlerRegistry()
        self._processor = Processor(
            store=registry, handlers=self.handlers, settings=self.settings, metrics=self.metrics
        )
        self._queues: ObjectQueues | None = None
        self.cache: WatchedObjects | None = None
        """The newest version of every watched object (``framework.cache``), once started."""
        self._listeners: list[tuple[Kind, ChangeListener]] = []
        self._cached_kinds: set[Kind] = set()
        """Kinds watched for ``cache`` readers only (``watch``)."""
        self._watchers: dict[Kind, KindWatcher] = {}
        self._tasks: list[SupervisedTask] = []
        self._lease_tasks: list[SupervisedTask] = []
        self._elections: dict[str, LeaderElection] = {}
        self._heartbeat: Heartbeat | None = None
        self.gate = ConvergeGate()
        """Closed while another live process holds this node's name: nothing converges
        (``converging``); controllers' own host-changing loops wait for it too."""
        self.gate.listen(self._converging_changed)
        self._started = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self.logger = KeyedLogger(log, {"node": self.settings.node_name})

    # --- registration --------------------------------------------------------------------

    def reconcile(self, kind: Kind, *, when: Filter | None = None) -> Callable[[H], H]:
        """Called with the latest object on create, update, start and resync."""

        def register(fn: H) -> H:
            self._before_start()
            if kind in self.handlers.reconcilers:
                raise OperatorError(f"a reconcile handler for {kind.value} is already registered")
            intent = ReconcileIntent(kind=kind, fn=fn, when=when or _always)
            self.handlers.reconcilers[kind] = intent
            return fn

        return register

    def finalize(
        self,
        kind: Kind,
        *,
        when: Filter | None = None,
        finalizer: str | None = None,
        runs: Filter | None = None,
    ) -> Callable[[H], H]:
        """Called once deletion is requested; ``finalizer`` is held until it succeeds.

        ``when``: which objects get the finalizer; ``runs``: which deleted objects this
        operator finalizes (default: every one holding the finalizer)."""

        def register(fn: H) -> H:
            self._before_start()
            if kind in self.handlers.finalizers:
                raise OperatorError(f"a finalize handler for {kind.value} is already registered")
            self.handlers.finalizers[kind] = FinalizeIntent(
                kind=kind,
                fn=fn,
                when=when or _always,
                finalizer=finalizer or default_finalizer(kind),
                runs=runs or _always,
            )
            return fn

        return register

    def timer(
        self, kind: Kind, interval: float, *, when: Filter | None = None, name: str | None = None
    ) -> Callable[[H], H]:
        """Called every ``interval`` seconds for every live object of ``kind``."""
        if interval <= 0:
            raise ValueError(f"timer interval must be > 0, got {interval}")

        def register(fn: H) -> H:
            self._before_start()
            timer_name = name or str(getattr(fn, "__qualname__", repr(fn)))
            self.handlers.timers.append(
                TimerIntent(
                    kind=kind, fn=fn, interval=interval, when=when or _always, name=timer_name
                )
            )
            return fn

        return register

    def singleton(self, name: str, *, interval: float | None = None) -> Callable[[H], H]:
        """Run only on the instance holding the ``name`` leader lease.

        Without ``interval`` the handler is a long-running task started when this
        instance becomes the leader and cancelled when it stops being it; with one, it
        is called every ``interval`` seconds while leader. Failures are logged and the
        handler is started again with backoff.
        """

        def register(fn: H) -> H:
            self._before_start()
            if name in self.handlers.singletons:
                raise OperatorError(f"a singleton named {name!r} is already registered")
            self.handlers.singletons[name] = SingletonIntent(name=name, fn=fn, interval=interval)
            return fn

        return register

    def on_change(self, kind: Kind, listener: ChangeListener) -> None:
        """Call ``listener(obj, deleted)`` with every newer version of a watched object of
        ``kind`` (and its last version once deleted), right after the operator's own watch
        delivered it: a way to requeue dependants without a second watch. ``kind`` must
        have handlers or be ``watch``ed (only those kinds are watched)."""
        self._before_start()
        self._listeners.append((kind, listener))

    def watch(self, kind: Kind) -> None:
        """List and watch ``kind`` even without a handler, so ``cache`` covers it: the
        leader loops read their per-pass lists from there instead of etcd (issue 18)."""
        self._before_start()
        self._cached_kinds.add(kind)

    def watched_kinds(self) -> list[Kind]:
        """Every kind this operator lists and watches, in hierarchy order."""
        wanted = {*self.handlers.kinds(), *self._cached_kinds}
        return [kind for kind in Kind if kind in wanted]

    def on_startup(self, fn: H) -> H:
        self._before_start()
        self.handlers.on_startup.append(fn)
        return fn

    def on_shutdown(self, fn: H) -> H:
        self._before_start()
        self.handlers.on_shutdown.append(fn)
        return fn

    def _before_start(self) -> None:
        if self._started:
            raise OperatorError("handlers must be registered before the operator starts")

    # --- helpers for handlers and tests --------------------------------------------------

    async def patch_status(
        self, obj: AnyResource, /, *, observe: bool = True, **fields: Any
    ) -> AnyResource | None:
        written = await patch_status(
            self.store,
            obj,
            observe=observe,
            max_conflicts=self.settings.status_conflict_retries,
            **fields,
        )
        if written is not None and self._queues is not None:
            self._queues.wrote(written)  # its next pass reads it, as a handler's own
        return written

    def queue_depth(self, kind: Kind) -> int:
        return 0 if self._queues is None else self._queues.depth(kind)

    def resync(self) -> None:
        """Queue every known object for its reconcile handler now (what the resync timer does)."""
        if self._queues is not None:
            self._queues.resync()

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return self._started and not self._stopped.is_set()

    def ready(self) -> bool:
        """Running, every task of the "controllers" component up, and this node's name
        held by this process: what /readyz asks.

        Raises ``TasksDown`` naming the tasks that crashed and are not back yet, and
        ``NodeNameTaken`` naming the process whose lease holds the name (``heartbeats``).
        """
        return self.running and self.tasks.readiness(CONTROLLERS)() and self.name_held()

    def trigger(self, kind: Kind, key: tuple[str, ...]) -> bool:
        """Run the reconcile handler of one known object soon, even if it did not change.

        For host events (a task exited): the object is queued like a watch event, so it
        is coalesced with pending work and never runs twice at once. False when the
        object is unknown (not listed yet, or filtered out).
        """
        if self._queues is None:
            return False
        latest = self._queues.latest(kind, key)
        if latest is None:
            return False
        self._queues.offer(latest, force=True)
        return True

    def requeue(self, obj: AnyResource) -> bool:
        """``trigger`` with a version just read from etcd: the newer of it and the queue's
        runs, so a watch that has not delivered that version yet cannot hold it back."""
        if self._queues is None:
            return False
        self._queues.offer(obj, force=True)
        return True

    def idle(self) -> bool:
        """No handler running and nothing queued (retries scheduled count as queued)."""
        return self._queues is None or self._queues.idle()

    async def wait_idle(self, *, within: float = 30.0, settle: float = 0.05) -> None:
        """Wait until ``idle`` has held for ``settle`` seconds (TimeoutError after ``within``)."""
        async with asyncio.timeout(within):
            while True:
                if self.idle():
                    await asyncio.sleep(settle)
                    if self.idle():
                        return
                else:
                    await asyncio.sleep(0.01)

    def is_leader(self, name: str) -> bool:
        election = self._elections.get(name)
        return election is not None and election.is_leader

    def leadership_terms(self, name: str) -> int:
        election = self._elections.get(name)
        return 0 if election is None else election.terms

    async def leader(self, name: str) -> LeaderInfo | None:
        election = self._elections.get(name)
        if election is None:
            raise OperatorError(f"no singleton named {name!r}")
        return await election.leader()

    def name_held(self) -> bool:
        """No other process's lease holds this node's name (``NodeNameTaken`` naming it
        otherwise; ``heartbeats``)."""
        return self._heartbeat is None or self._heartbeat.name_held()

    def _converging_changed(self, opened: bool) -> None:
        node = self.settings.node_name
        self.metrics.node_name_displaced.set(0 if opened else 1)
        if not opened:
            if self._queues is not None:
                self._queues.pause()
            log.warning(
                "node %s: another kukeond holds this node's name: this one stops converging "
                "(no container of the node's cells is started, stopped or changed here, "
                "what runs keeps running) until the name is its own again",
                node,
            )
            return
        log.warning("node %s: the node name is this process's again: converging, resync", node)
        if self._queues is not None:
            self._queues.resume()
            self._queues.resync()

    async def peers(self) -> list[Peer]:
        """The kukeond instances whose heartbeat is alive."""
        return await alive_peers(self._require_etcd("peering"), self.store.key_prefix)

    def _require_etcd(self, what: str) -> EtcdClient:
        if self._etcd is None:
            raise OperatorError(f"{what} needs an etcd client (pass a kukeon.store.Registry)")
        return self._etcd

    def _context(self, name: str = "") -> OperatorContext:
        return OperatorContext(
            operator=self,
            store=self.store,
            node_name=self.settings.node_name,
            logger=self.logger,
            name=name,
        )

    # --- lifecycle -----------------------------------------------------------------------

    def _spawn(self, factory: Callable[[], Coroutine[Any, Any, None]], name: str) -> SupervisedTask:
        return self.tasks.start(name, factory, component=CONTROLLERS)

    async def start(self) -> None:
        """Run startup handlers, start watching, return once every kind is listed."""
        if self._started:
            raise OperatorError("the operator was already started")
        self._started = True
        if self.handlers.singletons:
            self._require_etcd("singleton handlers")
        # Whose the name is, before the startup handlers and the first list: a process
        # that starts displaced must not touch what the holder runs.
        await self.claim_node_name()
        for handler in self.handlers.on_startup:
            await handler(self._context())

        self._queues = ObjectQueues(
            processor=self._processor,
            handlers=self.handlers,
            settings=self.settings,
            metrics=self.metrics,
        )
        watched = self.watched_kinds()
        for kind, listener in self._listeners:
            if kind not in watched:
                raise OperatorError(f"on_change({kind.value}): no handler watches that kind")
            self._queues.listen(kind, listener)
        handled = set(self.handlers.kinds())
        for kind in watched:
            if kind not in handled:
                self._queues.cache_only(kind)
        if not self.gate.is_open():
            self._queues.pause()
        queues = self._queues
        self._processor.cache = self.cache = WatchedObjects(
            lookup=queues.latest,
            listed=queues.is_listed,
            objects=queues.objects,
            revision=queues.seen_revision,
        )
        self._processor.wrote = queues.wrote
        for kind in watched:
            # Present from the start, so a dashboard sees 0 rather than no series.
            self.metrics.queue_depth.labels(kind.value).set(0)
            watcher = KindWatcher(
                kind=kind,
                store=self.store,
                queues=self._queues,
                settings=self.settings,
                metrics=self.metrics,
            )
            self._watchers[kind] = watcher
            self._tasks.append(self._spawn(watcher.run, f"kukeon-watch {kind.value}"))
        for timer in self.handlers.timers:

            async def tick(timer: TimerIntent = timer) -> None:
                await self._run_timer(timer)

            self._tasks.append(self._spawn(tick, f"kukeon-timer {timer.name}"))
        if self.settings.resync_interval:
            self._tasks.append(self._spawn(self._resync_forever, "kukeon-resync"))
        if self.settings.long_pass_seconds is not None:
            self._tasks.append(self._spawn(queues.long_passes.watch, "kukeon-long-passes"))
        self._start_leases()
        listed = [asyncio.ensure_future(w.listed.wait()) for w in self._watchers.values()]
        if listed:
            await asyncio.gather(*listed)

    async def claim_node_name(self) -> None:
        """Start the node heartbeat (the node name's claim) and wait for its first outcome:
        the name ours, another process's (``gate`` closed), or no answer from etcd (open:
        converging as without a claim). ``start`` does it; a daemon calls it earlier so its
        own node loops know it first. Once only; nothing without peering or etcd."""
        if self._heartbeat is not None or not self._peering or self._etcd is None:
            return
        settings = self.settings
        self._heartbeat = Heartbeat(
            client=self._etcd,
            prefix=self.store.key_prefix,
            node_name=settings.node_name,
            ttl=settings.lease_ttl,
            refresh_interval=settings.refresh_interval,
            host=settings.host_identity,
            gate=self.gate,
        )
        self._lease_tasks.append(self._spawn(self._heartbeat.run, "kukeon-heartbeat"))
        await self._heartbeat.first_claim.wait()

    def _start_leases(self) -> None:
        settings = self.settings
        for intent in self.handlers.singletons.values():
            election = LeaderElection(
                client=self._require_etcd("singleton handlers"),
                prefix=self.store.key_prefix,
                name=intent.name,
                node_name=settings.node_name,
                ttl=settings.lease_ttl,
                refresh_interval=settings.refresh_interval,
                poll_interval=settings.poll_interval,
            )
            self._elections[intent.name] = election

            async def lead(intent: SingletonIntent = intent) -> None:
                await self._run_singleton(intent)

            async def campaign(
                election: LeaderElection = election, lead: Callable[[], Any] = lead
            ) -> None:
                await election.run(lead)

            self._lease_tasks.append(self._spawn(campaign, f"kukeon-election {intent.name}"))

    async def _run_timer(self, timer: TimerIntent) -> None:
        assert self._queues is not None
        while True:
            await asyncio.sleep(timer.interval)
            self._queues.tick_timer(timer)

    async def _resync_forever(self) -> None:
        assert self._queues is not None
        interval = self.settings.resync_interval
        assert interval is not None
        while True:
            await asyncio.sleep(interval)
            self._queues.resync()

    async def _run_singleton(self, intent: SingletonIntent) -> None:
        """The body run while leader; restarted with backoff when it fails."""
        ctx = self._context(intent.name)
        failures = 0
        while True:
            try:
                await intent.fn(ctx)
                failures = 0
            except Exception:
                failures += 1
                delay = retry_delay(failures, settings=self.settings)
                ctx.logger.exception(
                    "singleton %s failed (attempt %d); again in %.1fs", intent.name, failures, delay
                )
                await asyncio.sleep(delay)
                continue
            if intent.interval is None:
                # A long-running singleton that returned has finished its work for this term.
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(intent.interval)

    async def stop(self, *, release_leases: bool = True) -> None:
        """Graceful shutdown; ``release_leases=False`` leaves leases to expire (a crash).
        Before ``start``, it ends the node name's claim if ``claim_node_name`` took it."""
        if self._stopped.is_set() or not (self._started or self._lease_tasks):
            return
        if self._stopping:
            # A second caller (a signal during shutdown) waits for the first one.
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            await self._cancel(self._tasks)
            if self._queues is not None:
                self._queues.stop_accepting()
                await self._queues.drain(self.settings.shutdown_grace)
            if not release_leases:
                for election in self._elections.values():
                    election.release_on_exit = False
                if self._heartbeat is not None:
                    self._heartbeat.release_on_exit = False
            await self._cancel(self._lease_tasks)
            for handler in self.handlers.on_shutdown:
                try:
                    await handler(self._context())
                except Exception:
                    self.logger.exception("shutdown handler %r failed", handler)
        finally:
            self._stopped.set()
            self._stop_requested.set()

    async def _cancel(self, tasks: list[SupervisedTask]) -> None:
        await self.tasks.stop(tasks)
        tasks.clear()

    def request_stop(self) -> None:
        """Ask ``run`` to stop (e.g. from a signal handler)."""
        self._stop_requested.set()

    async def run(self) -> None:
        """Start, serve until ``request_stop`` (or cancellation), then stop gracefully."""
        await self.start()
        try:
            await self._stop_requested.wait()
        finally:
            # A second cancellation (another signal) must not cut the shutdown's writes
            # short: bounded by the handlers' grace plus time for the leases and handlers.
            await finish_even_if_cancelled(
                self.stop(), within=self.settings.shutdown_grace + STOP_EXTRA_SECONDS
            )


def _always(_: Any) -> bool:
    return True


__all__ = ["ObjectHandler", "Operator", "OperatorError", "OperatorHandler"]
