"""This kukeond as a member of the fleet: its Node document, heartbeat lease and scheduler.

At start the daemon registers (creates or updates) ``Node/<node-name>`` with its labels
and what the host offers (CPUs, memory, cgroup mode, containerd and runc versions, CNI
plugins), then keeps an etcd lease alive with the key
``<prefix>/leases/fleet/<node>`` attached and writes ``lastHeartbeatTime`` at every
renewal. The scheduler leader reads those keys: a node whose key is gone is NotReady.
The heartbeat loop runs under the daemon's supervisor (component "fleet" on /readyz).

Before it takes its lease and reports Ready, a node stops the copies of the cells it no
longer runs (moved elsewhere while it was down), all at once: whoever sees it Ready again
never sees one of its stale copies. While it runs, a fencing watch compares the time since
the lease was last renewed with ``fenceAfterSeconds`` (default: the lease TTL): past it the
node stops its scheduler-placed cells by itself, before the scheduler can place them
elsewhere (``nodeLeaseTtl + nodeLostTimeout``); pinned cells go on. A renewal unfences it.
On the embedded etcd there is no fencing (``DaemonConfig.fences``): no other node can
take this node's cells, so stopping them while the etcd is away would only stop workloads.

While another kukeond holds this node's name (the operator's ``gate`` closed,
``kukeon.framework.converging``) the agent writes nothing of the node: no Node document
(labels, status, heartbeat time), no heartbeat key (its lease is given up), no fencing or
stale-copy stops: the holder's are the node's. Once the name is its own it takes a lease
and beats again.

`start_fleet` is the one call ``daemon.app`` makes: it also puts the scheduler on the
operator as a singleton, so every kukeond can schedule and exactly one does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import grpc
from aetcd import rpc

from kukeon.api import (
    Kind,
    Node,
    NodeCondition,
    NodeResources,
    NodeSpec,
    NodeState,
    NodeStatus,
    ObjectMeta,
)
from kukeon.controllers.cascade import CascadeDeleter, register_cascade
from kukeon.controllers.cellsets import CellAdmission, CellSetController, register_cellsets
from kukeon.controllers.scheduler import Scheduler, heartbeat_prefix, register_scheduler
from kukeon.framework import (
    ConvergeGate,
    EventRecorder,
    LeaseSession,
    Operator,
    SupervisedTask,
    Supervisor,
)
from kukeon.framework.statusbound import bounded
from kukeon.framework.waits import wait_event
from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.store import (
    AlreadyExists,
    Conflict,
    InvalidStoredDocument,
    NotFound,
    Registry,
    SpaceExceeded,
)
from kukeon.store.connection import is_space_exceeded

from .config import DaemonConfig
from .fencing import fencing_watch
from .keyroutes import rotation_condition
from .nodefacts import (
    api_endpoint,
    configured_api_port,
    disk_condition,
    memory_condition,
    node_addresses,
    read_capacity,
    runtime_condition,
)
from .peerfence import PeerCheck

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 5.0
HEARTBEAT_LOG_INTERVAL = 60.0
"""A heartbeat that keeps failing is reported at most this often (with a count)."""
HEARTBEAT_BACKOFF_MAX = 10.0
HEARTBEAT_ATTEMPT_TIMEOUT = 10.0
"""Seconds one heartbeat attempt (new lease, status write) may take before it counts as failed."""


def heartbeat_retry_delay(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones in a row."""
    return min(HEARTBEAT_BACKOFF_MAX, 0.5 * 2.0 ** min(failures - 1, 16))


def heartbeat_grace(config: DaemonConfig) -> float:
    """How long the scheduler leader waits for a heartbeat it has not heard since its term
    began before it marks the node NotReady: the lease TTL, and at least what a live node's
    heartbeat loop takes to try again after a failure (its longest back-off, one attempt)."""
    return max(float(config.node_lease_ttl), HEARTBEAT_BACKOFF_MAX + HEARTBEAT_ATTEMPT_TIMEOUT)


class NodeCells(Protocol):
    """What the node agent asks of this node's cells (``controllers.Departures``)."""

    async def stop_stale(self) -> int: ...

    async def fence(self) -> int: ...

    async def unfence(self) -> None: ...


FLEET = "fleet"
"""The readiness component of the node's own loops."""


class NodeDocumentUnreadable(Exception):  # noqa: N818 (a state, named as /readyz shows it)
    """/readyz's `node` check: this node's own Node document in etcd cannot be decoded, so
    no heartbeat can write Ready (the node goes NotReady and takes no new cell)."""


class ContainerdUnreachable(Exception):  # noqa: N818 (a state, named as /readyz shows it)
    """/readyz's `runtime` check: containerd did not answer the last heartbeat's check."""


# --- the agent ---------------------------------------------------------------------------


def _merge_condition(conditions: list[NodeCondition], fresh: NodeCondition) -> list[NodeCondition]:
    """Replace the condition of ``fresh.type``; keep its transition time if unchanged."""
    kept = [c for c in conditions if c.type != fresh.type]
    for old in conditions:
        if old.type == fresh.type and old.status == fresh.status:
            fresh = fresh.model_copy(update={"last_transition_time": old.last_transition_time})
    return [*kept, fresh]


class NodeAgent:
    """Registers this node and keeps its heartbeat (lease + ``lastHeartbeatTime``)."""

    def __init__(
        self,
        *,
        registry: Registry,
        config: DaemonConfig,
        containerd: ContainerdClient | None,
        supervisor: Supervisor | None = None,
        cells: NodeCells | None = None,
        on_runtime_change: Callable[[], None] | None = None,
        on_store_back: Callable[[], None] | None = None,
        gate: ConvergeGate | None = None,
    ) -> None:
        self.registry = registry
        self.gate = gate if gate is not None else ConvergeGate()
        """Closed while another kukeond holds this node's name: nothing written then."""
        self.on_runtime_change = on_runtime_change
        """Called when containerd stops or starts answering: the controllers' resync, so
        every cell's status says so now (HostUnobservable, then Ready), not at the next
        periodic resync."""
        self.on_store_back = on_store_back
        """Called when the heartbeat is written again after etcd refused it for space: the
        controllers' resync, so every object refused meanwhile is reconciled now, not after
        its back-off (up to ``retryBackoffMaxSeconds`` once etcd was full for minutes)."""
        self._store_was_full = False
        self.cells = cells
        """Stopped when stale (at start) or fenced; None: the node runs no cells."""
        self.fence_after = config.fence_after
        self.config = config
        self._retry_now = asyncio.Event()
        """Set to cut the heartbeat's back-off short (the fencing watch: etcd is back)."""
        self.fencing = fencing_watch(config, cells, self.silent_for, self._retry_now.set)
        self.peers = PeerCheck(
            registry=registry,
            node_name=config.node_name,
            interval=config.node_heartbeat_seconds,
            in_contact=lambda: self.silent_for() < self.fence_after / 2,
        )
        """Whom the fencing watch asks before it fences (``peerfence``)."""
        self.containerd = containerd
        self.node_name = config.node_name
        self.heartbeat_key = (heartbeat_prefix(registry.key_prefix) + self.node_name).encode()
        self.release_on_exit = True
        """False leaves the lease to expire on stop, as a crash does (tests use it)."""
        self.beats = 0
        self.api_port = configured_api_port(config)
        """The bound port of the TCP API (set by the endpoints once they listen)."""
        self._capacity = NodeResources()
        self._session: LeaseSession | None = None
        self._lost_confirmed_at = 0.0
        """When etcd last confirmed the lease lost last (0: none), while no new one is held."""
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self._task: SupervisedTask | None = None
        self._fencing: list[SupervisedTask] = []
        self.runtime_unreachable: str | None = None
        """Why containerd did not answer the last heartbeat's check (None: it did)."""
        self.disk_pressure = False
        self.document_unreadable: str | None = None
        """Why the last heartbeat could not decode this node's Node document (None: it could)."""
        self._unreadable_revision: int | None = None
        """The revision of the undecodable Node document the log last named."""
        self._labels_owed = False
        """The Node could not be read to bring its labels up to date with the config."""

    def runtime_ready(self) -> bool:
        """/readyz's `runtime` check: containerd answered the last heartbeat's check."""
        if self.runtime_unreachable is not None:
            raise ContainerdUnreachable(self.runtime_unreachable)
        return True

    def document_ready(self) -> bool:
        """/readyz's `node` check: the last heartbeat could read this node's Node document.
        One it cannot decode (corrupted, or written by a newer kukeon) is never overwritten
        here, as that would drop what it holds: the check names it until it is fixed or
        deleted (the next heartbeat then registers the node again)."""
        if self.document_unreadable is not None:
            raise NodeDocumentUnreadable(self.document_unreadable)
        return True

    async def start(self) -> None:
        self._capacity = await read_capacity(self.config, self.containerd)
        if self.gate.is_open():
            await self._take_part()
        else:  # another kukeond's node: the loop takes part once the name is ours
            self._labels_owed = True
        self._task = self._supervisor.start("kukeon-node-heartbeat", self._run, component=FLEET)
        if self.fencing is not None:
            self.fencing.ask = self.peers.ask
            self._fencing = [
                self._supervisor.start(name, loop, component=FLEET)
                for name, loop in (
                    ("kukeon-node-fencing", self._watch_fencing),
                    ("kukeon-node-peers", self.peers.run),
                )
            ]

    @property
    def fenced(self) -> bool:
        return self.fencing is not None and self.fencing.fenced

    @property
    def fence_held(self) -> bool:
        """The fence is due but held: every peer says etcd is down for it too."""
        return self.fencing is not None and self.fencing.held

    async def _take_part(self) -> None:
        """Register, stop the stale copies, take the lease and beat (the start's steps)."""
        # A Node document that cannot be decoded does not stop the start: the node serves,
        # runs its cells and says why on /readyz until the document is fixed or deleted.
        # Nor does a full etcd (it takes reads and deletes, so the API is worth serving):
        # the heartbeat loop registers, takes the lease and beats once it takes writes.
        full: SpaceExceeded | None = None
        try:
            await self._register()
        except SpaceExceeded as error:
            self._labels_owed = True  # the loop's first beat registers (beat())
            full = error
        if self.cells is not None:
            # Before the lease and Ready: nobody sees this node Ready with a stale copy.
            try:
                await self.cells.stop_stale()
            except Exception:  # the orphan collection at the controllers' start tries again
                log.exception("node %s: stopping stale copies failed", self.node_name)
        try:
            if full is None:
                await self._new_lease()
        except SpaceExceeded as error:
            full = error
        if full is None:
            await self._beat_or_wait_for_document()
        else:
            self._store_was_full = True
            log.warning(
                "node %s: etcd is full (%s); kukeond starts without its heartbeat, which "
                "its loop takes once etcd takes writes again",
                self.node_name,
                full,
            )

    def holds_lease(self) -> bool:
        """Whether this node's heartbeat lease is held now: taken, its key written, and not
        lost (a lost one is being replaced). The scheduler leader on this node never judges
        its own node gone while it is (``Heartbeats.holds_own_lease``)."""
        session = self._session
        return session is not None and not session.lost.is_set()

    def silent_for(self) -> float:
        """Seconds since the last request etcd confirmed for this node's lease was sent: the
        lost lease's while etcd grants no new one (0 before the first), or fencing would wait
        for a new lease that an unreachable etcd never grants."""
        session = self._session
        confirmed = self._lost_confirmed_at if session is None else session.confirmed_at
        return time.monotonic() - confirmed if confirmed else 0.0

    async def _watch_fencing(self) -> None:
        assert self.fencing is not None
        await self.fencing.run(self.gate.is_open)  # not this process's node while closed

    async def _register(self) -> None:
        """Create the Node, or bring an existing one's labels up to date with the config.
        One that cannot be decoded is left as it is (``_document_readable``): its labels are
        brought up to date by the first heartbeat that can read it."""
        labels = dict(self.config.node_labels)
        try:
            await self.registry.create(
                Node(metadata=ObjectMeta(name=self.node_name, labels=labels), spec=NodeSpec())
            )
            log.info("registered node %s", self.node_name)
            self._labels_owed = False
            return
        except AlreadyExists:
            pass
        for _ in range(10):
            try:
                current = await self.registry.get(*_node_key(self.node_name))
            except InvalidStoredDocument as error:
                self._document_readable(error)
                self._labels_owed = True
                return
            merged = {**current.metadata.labels, **labels}
            try:
                if merged != current.metadata.labels:
                    metadata = current.metadata.model_copy(update={"labels": merged})
                    await self.registry.update(current.model_copy(update={"metadata": metadata}))
                self._labels_owed = False
                return
            except Conflict:
                continue

    async def _new_lease(self) -> None:
        session = LeaseSession(
            client=self.registry.client,
            ttl=self.config.node_lease_ttl,
            refresh_interval=self.config.node_heartbeat_seconds,
            name=f"fleet/{self.node_name}",
        )
        try:
            await session.start()
        except grpc.aio.AioRpcError as error:  # a lease costs room too: refused when full
            if is_space_exceeded(error):
                raise SpaceExceeded(
                    f"node {self.node_name}: etcd refused the heartbeat lease: database "
                    "space exceeded (its NOSPACE alarm is raised)"
                ) from error
            raise
        client = self.registry.client
        try:
            await client.kvstub.Put(
                rpc.PutRequest(key=self.heartbeat_key, value=b"{}", lease=session.lease_id),
                timeout=_REQUEST_TIMEOUT,
                metadata=client.metadata,
            )
        except BaseException:  # the next attempt takes a lease of its own
            await session.close(revoke=True)
            raise
        self._session = session

    async def keep_key(self) -> None:
        """Put the heartbeat key back on this node's lease if it is not on it: deleted, or
        put on no lease (etcdctl, a restore) behind kukeond's back. The leader hears a node
        only by that key: a missing one marks a live node NotReady, one on no lease (which
        etcd never expires) kept a dead node alive for good (``alive_nodes`` ignores it)."""
        session = self._session
        if session is None or session.lost.is_set():
            return
        client = self.registry.client
        found = await client.kvstub.Range(
            rpc.RangeRequest(key=self.heartbeat_key, keys_only=True),
            timeout=_REQUEST_TIMEOUT,
            metadata=client.metadata,
        )
        if found.kvs and int(found.kvs[0].lease) == session.lease_id:
            return
        log.warning(
            "node %s: its heartbeat key %s was %s; putting it back on its lease",
            self.node_name,
            self.heartbeat_key.decode(errors="replace"),
            "put on another lease or none" if found.kvs else "deleted",
        )
        await client.kvstub.Put(
            rpc.PutRequest(key=self.heartbeat_key, value=b"{}", lease=session.lease_id),
            timeout=_REQUEST_TIMEOUT,
            metadata=client.metadata,
        )

    async def beat(self) -> None:
        """Write Ready, the conditions and ``lastHeartbeatTime`` to this node's status."""
        now = datetime.now(UTC)
        # Observed once per beat, not once per attempt: a write that meets a conflict is
        # retried with the same observations (containerd's check alone may take 3 s).
        observed = [
            await asyncio.to_thread(memory_condition, now),
            await self._disk_condition(now),
            await asyncio.to_thread(rotation_condition, self.config.state_dir, now),
        ]
        if self.containerd is not None:
            observed.append(await self._runtime_condition(now))
        for _ in range(10):
            try:
                node = await self.registry.get(*_node_key(self.node_name))
            except NotFound:
                self._document_readable(None)
                await self._register()
                continue
            except InvalidStoredDocument as error:
                self._document_readable(error)
                raise  # the loop counts it and tries again
            self._document_readable(None)
            if self._labels_owed:  # unreadable at the start, fixed since
                await self._register()
                continue
            assert isinstance(node, Node)
            conditions = _merge_condition(
                list(node.status.conditions),
                NodeCondition(
                    type="Ready",
                    status="True",
                    reason="KukeondReady",
                    message="kukeond is renewing its heartbeat lease",
                    last_transition_time=now,
                ),
            )
            for condition in observed:
                conditions = _merge_condition(conditions, condition)
            addresses = await asyncio.to_thread(node_addresses, self.config)
            status = NodeStatus(
                state=NodeState.READY,
                addresses=addresses,
                api_endpoint=api_endpoint(addresses, self.api_port),
                capacity=self._capacity,
                allocatable=self._capacity,
                conditions=conditions,
                last_heartbeat_time=now,
                observed_generation=node.metadata.generation,
                node_name=self.node_name,
                updated_at=now,
            )
            try:
                await self.registry.update_status(
                    bounded(node.model_copy(update={"status": status}))
                )
            except Conflict:
                continue
            self.beats += 1
            return

    async def _beat_or_wait_for_document(self) -> None:
        """A beat, unless this node's Node document cannot be decoded: then nothing is
        written, and /readyz and the log say why (``_document_readable``) until a beat of
        the heartbeat loop can read it again. No reason to stop a start, nor is a full
        etcd (the loop's next beat writes it). Nothing while another kukeond holds the
        node's name: its Node is that one's to write."""
        if not self.gate.is_open():
            return
        try:
            await self.beat()
        except InvalidStoredDocument:
            pass
        except SpaceExceeded as error:
            log.warning("node %s: heartbeat not written: %s", self.node_name, error)

    def _document_readable(self, error: InvalidStoredDocument | None) -> None:
        """Record whether this node's Node document could be decoded, for /readyz; said in
        the log once per revision that cannot be, and once when it can be read again."""
        if error is None:
            if self.document_unreadable is not None:
                log.info("node %s: its Node document can be read again", self.node_name)
            self.document_unreadable = None
            self._unreadable_revision = None
            return
        self.document_unreadable = (
            f"Node/{self.node_name} at {error.key} (revision {error.revision}) cannot be "
            f"decoded: {error.reason}; the heartbeat cannot write it and does not overwrite "
            "it: fix it, or delete it and this node registers again"
        )
        if error.revision != self._unreadable_revision:
            self._unreadable_revision = error.revision
            log.warning(
                "node %s: %s; until then no new cell is placed here (the cells it runs go on)",
                self.node_name,
                self.document_unreadable,
            )

    async def _disk_condition(self, now: datetime) -> NodeCondition:
        condition = await asyncio.to_thread(disk_condition, self.config.state_dir, now)
        pressure = condition.status == "True"
        if pressure != self.disk_pressure:
            if pressure:
                log.warning("node %s: DiskPressure: %s", self.node_name, condition.message)
            else:
                log.info("node %s: the disk has room again: %s", self.node_name, condition.message)
        self.disk_pressure = pressure
        return condition

    async def _runtime_condition(self, now: datetime) -> NodeCondition:
        assert self.containerd is not None
        condition = await runtime_condition(self.containerd, now)
        unreachable = condition.message if condition.status == "True" else None
        changed = (unreachable is None) != (self.runtime_unreachable is None)
        if changed and unreachable is not None:
            log.warning("node %s: %s", self.node_name, unreachable)
        elif changed:
            log.info("node %s: containerd answers again", self.node_name)
        self.runtime_unreachable = unreachable
        if changed and self.on_runtime_change is not None:
            self.on_runtime_change()
        return condition

    async def set_api_port(self, port: int | None) -> None:
        """Record the TCP API's bound port in the Node's ``status.apiEndpoint`` now (or at
        the first beat that can read an undecodable Node document again)."""
        if port != self.api_port:
            self.api_port = port
            await self._beat_or_wait_for_document()

    async def _run(self) -> None:
        # While etcd is down every attempt fails at once (the lost lease does not wait for
        # the interval): back off, and say so once per HEARTBEAT_LOG_INTERVAL with a count.
        loop = asyncio.get_running_loop()
        failures = unreported = 0
        reported_at = -HEARTBEAT_LOG_INTERVAL
        while True:
            if not self.gate.is_open():
                await self._stand_aside()
                continue
            session = self._session  # None: none taken yet (etcd was full at the start)
            if failures:
                await wait_event(self._retry_now, heartbeat_retry_delay(failures))
                self._retry_now.clear()
            elif session is not None:
                await wait_event(session.lost, self.config.node_heartbeat_seconds)
            try:
                # One attempt never hangs: after a partition a call may sit on a connection
                # whose packets were dropped until TCP retransmits, long after etcd is back.
                async with asyncio.timeout(HEARTBEAT_ATTEMPT_TIMEOUT):
                    if session is None:
                        await self._new_lease()
                    elif session.lost.is_set():
                        if not failures:
                            log.warning(
                                "node %s: heartbeat lease lost, taking a new one", self.node_name
                            )
                        await self._give_up(session)
                        await self._new_lease()
                    await self.keep_key()
                    await self.beat()
            except asyncio.CancelledError:
                raise
            except InvalidStoredDocument:  # said once per revision (_document_readable)
                failures += 1
                continue
            except Exception as error:
                failures += 1
                unreported += 1
                self._store_was_full |= isinstance(error, SpaceExceeded)
                if loop.time() - reported_at >= HEARTBEAT_LOG_INTERVAL:
                    log.warning(
                        "node %s: heartbeat failed %d time(s) since the last report (%r); "
                        "retrying in %gs",
                        self.node_name,
                        unreported,
                        error,
                        heartbeat_retry_delay(failures),
                    )
                    reported_at, unreported = loop.time(), 0
                continue
            if failures:
                log.info(
                    "node %s: heartbeat works again after %d failure(s)", self.node_name, failures
                )
                failures = unreported = 0
                reported_at = -HEARTBEAT_LOG_INTERVAL
            if self._store_was_full:
                self._store_was_full = False
                log.info(
                    "node %s: etcd takes writes again, reconciling everything now", self.node_name
                )
                if self.on_store_back is not None:
                    self.on_store_back()

    async def _give_up(self, lost: LeaseSession) -> None:
        """Drop a lost lease for a new one; until one is granted its last confirmation is
        the one fencing counts from (``silent_for``)."""
        self._lost_confirmed_at = lost.confirmed_at
        await lost.close(revoke=True)
        self._session = None

    async def _stand_aside(self) -> None:
        """Another kukeond holds the node's name: give up the heartbeat lease (its key
        goes with it, unless the holder's lease holds it) and wait for the name. The next
        beat after takes a new lease and writes the Node (its labels too)."""
        session, self._session = self._session, None
        self._lost_confirmed_at = 0.0  # the holder's to fence; counted afresh once ours
        if session is not None:
            log.warning(
                "node %s: another kukeond holds the node name: not beating (the Node and "
                "its heartbeat are that one's) until the name is this one's again",
                self.node_name,
            )
            await session.close(revoke=True)
        self._labels_owed = True
        await self.gate.wait_open()
        log.info("node %s: the node name is this one's again: beating", self.node_name)

    async def stop(self) -> None:
        for task in self._fencing:
            await task.stop()
        self._fencing = []
        if self._task is not None:
            await self._task.stop()
            self._task = None
        if self._session is not None:
            await self._session.close(revoke=self.release_on_exit)
            self._session = None


def _node_key(name: str) -> tuple[Kind, tuple[str]]:
    return Kind.NODE, (name,)


@dataclass
class Fleet:
    """What `start_fleet` started: the node agent, this daemon's scheduler and set controller."""

    agent: NodeAgent
    scheduler: Scheduler
    cellsets: CellSetController

    async def stop(self) -> None:
        await self.agent.stop()


async def start_fleet(
    op: Operator,
    *,
    registry: Registry,
    config: DaemonConfig,
    containerd: ContainerdClient | None,
    cells: NodeCells | None = None,
    recorder: EventRecorder | None = None,
    admission: CellAdmission | None = None,
) -> Fleet:
    """Register this node, start its heartbeat and put the scheduler on ``op``.

    Called before ``op.start()`` (singletons must be registered before the start). It
    claims the node name first (``Operator.claim_node_name``): displaced by another live
    kukeond, the agent writes nothing of the node until the name is its own.
    ``cells`` (the controllers' ``departures``) have their stale copies stopped before the
    node reports Ready, and are fenced when the lease cannot be renewed. ``recorder``
    takes the cell set controller's Events; ``admission`` refuses a set's new cells its
    realm's security level forbids (``CellSetController``).
    """
    await op.claim_node_name()
    scheduler = Scheduler(
        registry=registry,
        node_name=config.node_name,
        node_lost_timeout=config.node_lost_timeout,
        interval=config.scheduler_interval,
        release_interval=config.node_release_seconds,
        heartbeat_grace=heartbeat_grace(config),
    )
    register_scheduler(op, scheduler)
    register_cascade(op, CascadeDeleter(registry=registry))
    interval = config.scheduler_interval
    sets = CellSetController(
        registry=registry, interval=interval, recorder=recorder, admission=admission
    )
    register_cellsets(op, sets)
    agent = NodeAgent(
        registry=registry,
        config=config,
        containerd=containerd,
        supervisor=op.tasks,
        cells=cells,
        on_runtime_change=op.resync,
        on_store_back=op.resync,
        gate=op.gate,
    )
    scheduler.heartbeats.holds_own_lease = agent.holds_lease
    op.metrics.node_lease_unconfirmed.set_function(agent.silent_for)
    op.metrics.node_fenced.set_function(lambda: float(agent.fenced))
    op.metrics.node_fence_held.set_function(lambda: float(agent.fence_held))
    try:
        await agent.start()
    except BaseException:
        await op.stop()  # the name's claim taken above ends with the failed start
        raise
    return Fleet(agent=agent, scheduler=scheduler, cellsets=sets)
