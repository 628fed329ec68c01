"""The fleet scheduler: places unassigned cells on nodes, and moves them off lost nodes.

It runs on every kukeond but acts only on the one holding the ``scheduler`` leader lease
(``Operator.singleton``), so a lone kukeond schedules its own cells within a pass and a
fleet never has two schedulers writing at once. Each pass reads the nodes, the cells and
the node heartbeat leases at once and then:

1. marks a node whose heartbeat lease is gone ``NotReady`` (and a cell on it ``Unknown``),
   once this leader has heard from it or waited ``heartbeat_grace`` (``Heartbeats.unheard_for``);
2. once a node has been NotReady for ``node_lost_timeout``, clears the placement of the
   cells the scheduler put there (``kukeon.io/scheduled-by: scheduler``), so they are
   placed again; cells the user pinned with ``nodeName`` stay and wait for their node.
   How long is counted from when this leader first saw the node NotReady, on its
   monotonic clock (``nodelost.LostTimer``): a step of the wall clock moves nothing early;
3. places every cell without ``nodeName``: *filter* (Ready, not cordoned, selector
   matches, enough allocatable memory for the cell's limits; a CellSet's cell also keeps
   its set's ``spec.spread``, ``api.spread``: the pass lists the sets when it has one to
   place), then *score* (fewest cells of the same CellSet, then fewest cells, then most
   free memory, then the name), writing ``spec.nodeName`` by compare-and-swap.
   A cell that fits nowhere gets ``Pending``/``Unschedulable`` and the reason per node;
4. at most every ``release_interval`` seconds, releases what realms, spaces and stacks
   hold for nodes that are gone (NotReady for ``node_lost_timeout``, or whose Node
   document was deleted) and absent (``Heartbeats.gone``): their per-node
   finalizer and their ``status.nodes`` entry, so a deletion never waits for a dead node
   (``layers.release_node``), and a running node whose Node was deleted keeps its own;
5. drops the finalizer of a deleted cell whose node is absent (``Heartbeats.gone``): only a
   cell's own node finalizes it (``Departures.finalizes_here``: before, any node that saw
   the deletion first could drop the shared finalizer and the cell's own copy ran on until
   its node's orphan collection), so without this a deletion would wait for the node.

Every per-pass list (Nodes, Cells, CellSets, realms, spaces, stacks) is read from the
operator's cache (``framework.cache.CachedReads``; etcd when the kind is not watched, as
in a unit test without an operator), and the cell watch that wakes a pass is the
operator's own (``LeaderLoop.watch_with``), so the woken pass sees the cell that woke it.
What the pass wrote (a binding, a node marked NotReady, a status) is laid over the cache
until the watch shows it (``RecentWrites``): a cell bound in one pass counts on its node in
the next even if the watch has not delivered the binding yet (kube-scheduler's "assumed"
pods), else two quick passes would pile cells on one node. Every write is a
compare-and-swap on the version read, so a decision taken on a stale version fails
(Conflict, or NotFound for a deleted cell) and the next pass decides again. The heartbeat
leases are read from etcd at every pass (one keys-only Range: they are etcd leases, not
documents the operator watches).

A node's heartbeat is judged by what this leader heard of it in its term
(``hearing.Heartbeats``): a node not heard since the term began (or since a failed pass) is
marked NotReady only after the grace, and what cannot be taken back (a deleted cell's
finalizer dropped, a NodeNotFound mark, a node's holdings released) waits until the
leader has not heard the node for the grace, never on one read's missing lease, and
never for this process's own node while it holds its lease.

The decision itself (``api.placement``: ``filter_reason``, ``choose_node``) is pure,
over ``NodeView`` snapshots, so it is unit-tested without etcd; ``kukectl drain`` asks it
too. A drained cell is handed back by its old node only once its copy there is stopped
(``controllers.departures``), so the scheduler never places a cell that still runs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from aetcd import rpc

from kukeon.api import (
    CELLSET_LABEL,
    SCHEDULED_BY_ANNOTATION,
    SCHEDULED_BY_SCHEDULER,
    Cell,
    CellSet,
    CellState,
    Kind,
    Node,
    NodeCondition,
    NodeState,
    Realm,
    Space,
    Stack,
    key_of,
)
from kukeon.api.placement import (
    EVICT_ANNOTATION,
    NodeView,
    Placement,
    cell_memory_request,
    choose_node,
    count_cells,
    filter_reason,
    is_scheduler_placed,
    node_view,
    realm_memory_caps,
    score,
    selector_matches,
    spread_key,
)
from kukeon.api.spread import SpreadRule, rules_by_set, spread_limit
from kukeon.concurrently import both, nothing
from kukeon.framework import Operator, OperatorContext, Supervisor, patch_status
from kukeon.framework.cache import CachedReads
from kukeon.framework.intents import default_finalizer
from kukeon.framework.statusbound import bounded
from kukeon.store import (
    Conflict,
    EtcdClient,
    Invalid,
    NotFound,
    Registry,
    StoreError,
    Unavailable,
    WatchEvent,
)
from kukeon.store.keys import range_end

from .bindrefusals import RefusedBindings
from .hearing import HEARTBEAT_GRACE, Heartbeats
from .layers import LAYER_KINDS, nodes_named, release_node
from .leading import LeaderLoop, Watch
from .nodelost import LostTimer, ready_since

log = logging.getLogger(__name__)

CELL_FINALIZER = default_finalizer(Kind.CELL)
"""The finalizer a cell's node holds (``controllers.cell``'s finalize)."""

SCHEDULED_BY = SCHEDULED_BY_ANNOTATION
SCHEDULER = SCHEDULED_BY_SCHEDULER
UNSCHEDULABLE = "Unschedulable"
NODE_LOST = "NodeLost"
NODE_NOT_FOUND = "NodeNotFound"
_REQUEST_TIMEOUT = 5.0
RELEASE_INTERVAL = 5.0
"""Seconds between two passes over realms, spaces and stacks for nodes that are gone."""
WRITES_IN_FLIGHT = 32
"""Placement and status writes of one pass sent to etcd at the same time."""
UNREADABLE_NODE = "its Node document in etcd cannot be decoded (kukeond's log says why)"
"""Why a node is left out of a placement: lists skip its document."""


def heartbeat_prefix(key_prefix: str) -> str:
    """Where each node keeps its heartbeat key, attached to its lease."""
    return f"{key_prefix.rstrip('/')}/leases/fleet/"


async def alive_nodes(client: EtcdClient, key_prefix: str) -> set[str]:
    """The nodes whose heartbeat lease is alive now. A key on no lease is none: put by hand
    or by a restore, etcd never expires it (a node puts its key back on its lease at its
    next beat: ``NodeAgent.keep_key``)."""
    start = heartbeat_prefix(key_prefix).encode()
    await client.connect()
    try:
        response = await client.kvstub.Range(
            rpc.RangeRequest(key=start, range_end=range_end(start), keys_only=True),
            timeout=_REQUEST_TIMEOUT,
            metadata=client.metadata,
        )
    except grpc.aio.AioRpcError as error:
        # A store error as every other read of the pass: the pass then counts as failed
        # (``Scheduler.run_pass``: the heartbeat grace starts over), nothing heard.
        raise Unavailable(
            f"read the heartbeat leases: {error.code().name}: {error.details()}"
        ) from error
    return {kv.key[len(start) :].decode() for kv in response.kvs if kv.lease}


_EPOCH = datetime.fromtimestamp(0, UTC)


# --- the pass (talks to etcd) ------------------------------------------------------------


@dataclass
class SchedulerStats:
    passes: int = 0
    assigned: int = 0
    rescheduled: int = 0
    released: int = 0
    """Per-node finalizers or status entries of gone nodes released."""
    released_cells: int = 0
    """Deleted cells' finalizers dropped for a node whose kukeond is not running."""


class Scheduler:
    """One leader's scheduling passes over the fleet."""

    def __init__(
        self,
        *,
        registry: Registry,
        node_name: str,
        node_lost_timeout: float,
        interval: float = 1.0,
        release_interval: float = RELEASE_INTERVAL,
        heartbeat_grace: float = HEARTBEAT_GRACE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.node_name = node_name
        self.node_lost_timeout = node_lost_timeout
        self.heartbeats = Heartbeats(own_node=node_name, grace=heartbeat_grace, monotonic=monotonic)
        """What this leader heard of each node's heartbeat in its term."""
        self.interval = interval
        self.release_interval = release_interval
        self._monotonic = monotonic
        self._released_at: float | None = None
        """When (monotonic) the last release of gone nodes ran."""
        self.lost = LostTimer(monotonic)
        """How long each node has been NotReady, by this leader's monotonic clock: the wall
        clock times (status, messages) but never decides a move."""
        self._unplaced = True
        """The last pass saw a cell without a node (or none ran yet): idle passes list cells."""
        self._awaiting = False
        """The last pass left a cell's decision until its node has been absent for the
        grace (``Heartbeats.gone``): idle passes list cells until it is taken."""
        self._alive: frozenset[str] | None = None
        """The nodes whose lease the last pass saw (None before the first)."""
        self.refused = RefusedBindings()
        """Cells whose binding the store refused: not placed again until they change."""
        self._clock = clock
        self._rules: Mapping[str, SpreadRule] = {}
        """This pass's spread rule of each set with a cell to place (`rules_by_set`)."""
        self._loop = LeaderLoop(what="scheduling pass", registry=registry, interval=interval)
        self.reads = CachedReads(registry)
        """The per-pass lists, with this scheduler's recent writes (bindings) over them."""
        self.stats = SchedulerStats()
        self.tasks: Supervisor | None = None
        """Runs the cell watch while leader (the operator's, once registered on one)."""

    def use(self, op: Operator) -> None:
        """Run on ``op``: its supervisor, and its cache and watch of every kind a pass reads."""
        self.tasks = op.tasks
        self.reads.source = lambda: op.cache
        for kind in (Kind.NODE, Kind.CELL_SET, *LAYER_KINDS):
            op.watch(kind)
        self._loop.watch_with(op, [self._watch()])

    def _watch(self) -> Watch:
        return Watch("kukeon-scheduler-watch", Kind.CELL, self._wakes_for)

    def wake(self) -> None:
        """Run the next pass now (a cell without a node appeared)."""
        self._loop.wake()

    async def lead(self) -> None:
        """The leader's loop (``LeaderLoop``): a pass at every wake-up, at least every
        ``interval`` seconds; the cell watch wakes it for a cell that needs a node."""
        self.lost.restart()  # what a node's loss lasted before this term is not known here
        self.listen_afresh()
        await self._loop.lead(lambda woken: self.run_pass(woken=woken), [self._watch()], self.tasks)

    def listen_afresh(self) -> None:
        """Forget which heartbeats were heard: the term begins."""
        self.heartbeats.listen_afresh()

    async def run_pass(self, *, woken: bool = True) -> None:
        """One pass: node liveness, cells placed and moved off lost nodes, gone nodes
        released. A pass the interval brought (``woken`` False) while every node is Ready
        and the last pass left no cell without a node has no cell to decide about: it does
        not list them (listing and parsing every cell of the fleet each second was most of
        an idle leader's CPU); a cell that needs a node wakes the loop through the watch.
        A pass the store fails (etcd full or out of reach) starts the heartbeat grace over."""
        if self.heartbeats.since is None:
            self.listen_afresh()
        try:
            await self._run_pass(woken=woken)
        except StoreError:
            self.heartbeats.failed()  # nothing was heard meanwhile (``Heartbeats.failed``)
            raise

    async def _run_pass(self, *, woken: bool) -> None:
        self.stats.passes += 1
        # A woken pass has cells to decide about: they are listed while the nodes are read.
        (nodes, alive), listed = await both(
            self._nodes_and_leases(),
            self.reads.list(Kind.CELL) if woken or self._unplaced or self._awaiting else nothing(),
        )
        self._alive = frozenset(alive)
        self.heartbeats.hear(alive)
        now = self._clock()

        views: dict[str, NodeView] = {}
        lost_since: dict[str, datetime] = {}
        not_ready: list[Node] = []
        # A realm's cells reserve no more of a node than its memory ceiling there.
        caps = realm_memory_caps(
            r for r in await self.reads.list(Kind.REALM) if isinstance(r, Realm)
        )
        for node in nodes:
            unheard = self.heartbeats.unheard_for(node.metadata.name, alive)
            node = await self._observe_liveness(
                node, alive=unheard < self.heartbeats.grace, now=now
            )
            views[node.metadata.name] = node_view(node, caps)
            if not views[node.metadata.name].ready:
                lost_since[node.metadata.name] = ready_since(node) or now
                not_ready.append(node)
        lost_for = self.lost.observe(not_ready)
        cells: list[Cell] = []
        if listed is None and lost_since:
            listed = await self.reads.list(Kind.CELL)
        if listed is not None:
            cells = [c for c in listed if isinstance(c, Cell)]
            self._unplaced = any(not c.spec.node_name for c in cells)
            self._awaiting = False  # until a decision is left to the grace again
            self.refused.keep_only({key_of(c) for c in cells})
        count_cells(views, cells)
        self._rules = await self._spread_rules(cells, lost=lost_since.keys())

        # Decisions are taken one cell at a time (each one counts in the next one's score),
        # oldest first; the writes they lead to go to etcd concurrently.
        writes: list[Coroutine[Any, Any, None]] = []
        for cell in sorted(cells, key=_age):
            assigned = cell.spec.node_name
            if assigned and assigned in lost_since:
                writes.append(
                    self._on_lost_node(
                        cell, views, since=lost_since[assigned], lost_for=lost_for[assigned]
                    )
                )
            elif (
                not assigned and cell.metadata.deletion_timestamp is None and self.refused.due(cell)
            ):
                writes.append(self._place(cell, views))
            if (absent := self._on_absent_node(cell, views, alive)) is not None:
                writes.append(absent)
        gate = asyncio.Semaphore(WRITES_IN_FLIGHT)

        async def bounded(write: Coroutine[Any, Any, None]) -> None:
            async with gate:
                await write

        try:
            await asyncio.gather(*(bounded(write) for write in writes))
        finally:
            # A pass cancelled before gather started a write's task leaves that write never
            # awaited (a RuntimeWarning at shutdown). Only those: a write still running
            # (another one failed first) is left to end as it would.
            for write in writes:
                if inspect.getcoroutinestate(write) == inspect.CORO_CREATED:
                    write.close()

        ticks = self._monotonic()
        due = self._released_at is None or ticks - self._released_at >= self.release_interval
        if due:
            self._released_at = ticks
            gone = {name for name, lost in lost_for.items() if lost >= self.node_lost_timeout}
            await self.release_gone_nodes(
                registered={n.metadata.name for n in nodes}, gone=gone, alive=alive
            )

    async def _nodes_and_leases(self) -> tuple[list[Node], set[str]]:
        # The Nodes first, then the leases: a node takes its lease before it writes Ready, so
        # a Ready read here has its lease in the read after. The other way round, a node
        # starting between the two reads was marked NotReady over its fresh Ready.
        nodes = [n for n in await self.reads.list(Kind.NODE) if isinstance(n, Node)]
        return nodes, await alive_nodes(self.registry.client, self.registry.key_prefix)

    async def _spread_rules(
        self, cells: Sequence[Cell], *, lost: Collection[str]
    ) -> dict[str, SpreadRule]:
        """The sets' rules, listed only when a cell of a set may be placed in this pass."""
        if not any(
            CELLSET_LABEL in cell.metadata.labels
            and (not cell.spec.node_name or cell.spec.node_name in lost)
            for cell in cells
        ):
            return {}
        listed = await self.reads.list(Kind.CELL_SET)
        return rules_by_set(c for c in listed if isinstance(c, CellSet))

    async def release_gone_nodes(
        self, *, registered: set[str], gone: set[str], alive: Collection[str] = ()
    ) -> int:
        """Release the per-node finalizers and entries of nodes in ``gone`` or unregistered.

        A node whose heartbeat lease is ``alive`` is never released, even if its Node
        document was deleted: its kukeond runs (and registers again at its next heartbeat),
        so what it holds is still on its host and it tears that down itself. Nor is one
        whose lease is missing from this read only (``Heartbeats.gone``: not for the grace).
        """
        released = 0
        for kind in LAYER_KINDS:
            for obj in await self.reads.list(kind):
                if not isinstance(obj, Realm | Space | Stack):
                    continue
                for node in sorted(nodes_named(obj)):
                    if (node in registered and node not in gone) or not self.heartbeats.gone(
                        node, alive
                    ):
                        continue
                    log.info(
                        "%s %s: releasing node %s (%s)",
                        kind.value,
                        obj.metadata.name,
                        node,
                        "lost" if node in registered else "no longer registered",
                    )
                    try:
                        await release_node(self.registry, obj, node, by=self.node_name)
                    except (Conflict, Invalid) as error:
                        log.warning("could not release node %s: %s", node, error)
                        continue
                    released += 1
        self.stats.released += released
        return released

    def _on_absent_node(
        self, cell: Cell, views: Mapping[str, NodeView], alive: Collection[str]
    ) -> Coroutine[Any, Any, None] | None:
        """For a cell whose node has no lease in this read: the release of its finalizer (a
        deleted cell) or its NodeNotFound mark (no Node document either), once the node is
        gone (``Heartbeats.gone``). Until then nothing, and idle passes keep listing the
        cells (``_awaiting``) so that the decision is taken when the grace is over."""
        node = cell.spec.node_name
        if node is None or node in alive:
            return None
        if held_for_a_dead_node(cell, alive):
            decide = self._release_deleted
        elif node not in views and cell.metadata.deletion_timestamp is None:
            decide = self._mark_no_node
        else:
            return None
        if not self.heartbeats.gone(node, alive):
            self._awaiting = True
            return None
        return decide(cell)

    def _wakes_for(self, event: WatchEvent) -> bool:
        """A cell to place, a deleted one whose node was down at the last pass
        (``held_for_a_dead_node``), or one on a node without a heartbeat at the last pass
        not marked yet (a name no node has: ``_mark_no_node``). A node that dies while its
        cells are being deleted is NotReady at the next pass, which then lists the cells
        anyway."""
        cell = event.object
        if event.type == "DELETED" or not isinstance(cell, Cell):
            return False
        if not cell.spec.node_name:
            return True
        if self._alive is not None and cell.spec.node_name in self._alive:
            return False
        return cell.metadata.deletion_timestamp is not None or cell.status.reason not in (
            NODE_LOST,
            NODE_NOT_FOUND,
        )

    async def _release_deleted(self, cell: Cell) -> None:
        """Drop the finalizer of a deleted cell whose node's kukeond is not running: only that
        node finalizes its cells (``Departures.finalizes_here``), and until it returns the
        cell would never go. Its copy there, if any, is stopped by the node's orphan
        collection before it reports Ready again."""
        try:
            released = await self.registry.remove_finalizer(Kind.CELL, key_of(cell), CELL_FINALIZER)
        except (NotFound, Conflict, Invalid) as error:
            log.debug("cell %s: finalizer not released now: %s", _name(cell), error)
            return
        if released is None:
            self.reads.writes.removed(cell)
        else:
            self.reads.writes.wrote(released)
        self.stats.released_cells += 1
        log.info(
            "cell %s deleted while node %s is down: released (the node stops its copy when "
            "it returns)",
            _name(cell),
            cell.spec.node_name,
        )

    async def _observe_liveness(self, node: Node, *, alive: bool, now: datetime) -> Node:
        """Mark a node not heard for long enough NotReady (its own kukeond writes Ready)."""
        if alive or node.status.state == NodeState.NOT_READY:
            return node
        log.warning("node %s: heartbeat lease expired, marking it NotReady", node.metadata.name)
        conditions = [c for c in node.status.conditions if c.type != "Ready"]
        conditions.append(
            NodeCondition(
                type="Ready",
                status="Unknown",
                reason="NodeStatusUnknown",
                message="kukeond stopped renewing its heartbeat lease",
                last_transition_time=now,
            )
        )
        status = node.status.model_copy(
            update={
                "state": NodeState.NOT_READY,
                "reason": "HeartbeatLost",
                "message": f"no heartbeat lease since {now.isoformat()}",
                "conditions": conditions,
                "node_name": self.node_name,
                "updated_at": now,
            }
        )
        try:
            updated = await self.registry.update_status(
                bounded(node.model_copy(update={"status": status}))
            )
        except (Conflict, NotFound):
            return node  # it changed (re-registered?): the next pass sees the new version
        assert isinstance(updated, Node)
        self.reads.writes.wrote(updated)
        return updated

    def _on_lost_node(
        self, cell: Cell, views: Mapping[str, NodeView], *, since: datetime, lost_for: float
    ) -> Coroutine[Any, Any, None]:
        """Decide now (reschedule, or mark Unknown); the returned coroutine writes it.
        ``since`` is the wall-clock transition (shown); ``lost_for`` the monotonic count."""
        node = cell.spec.node_name
        if is_scheduler_placed(cell) and lost_for >= self.node_lost_timeout:
            log.info("cell %s: node %s lost for %.0fs, rescheduling", _name(cell), node, lost_for)
            return self._place(cell, views, moving_from=node)
        return self._mark_unknown(cell, node=node, since=since)

    async def _mark_unknown(self, cell: Cell, *, node: str | None, since: datetime) -> None:
        if cell.status.state == CellState.UNKNOWN:
            return
        message = f"node {node} is NotReady since {since.isoformat()}"
        await self._mark(cell, CellState.UNKNOWN, NODE_LOST, message, node_name=self.node_name)

    async def _mark_no_node(self, cell: Cell) -> None:
        """A cell assigned to a node with neither a Node document nor a heartbeat lease (a
        name no node has, or one released since) runs nowhere: its status said what its
        last node reported (Ready, after a move of nodeName away from it) and nothing
        ever replaced it."""
        if cell.status.state == CellState.PENDING and cell.status.reason == NODE_NOT_FOUND:
            return
        node = cell.spec.node_name
        message = (
            f"node {node} is not registered (no Node, no heartbeat): nothing runs the cell "
            "until a node of that name joins, or spec.nodeName names another"
        )
        await self._mark(cell, CellState.PENDING, NODE_NOT_FOUND, message, node_name=None)

    async def _mark(
        self, cell: Cell, state: CellState, reason: str, message: str, *, node_name: str | None
    ) -> None:
        """Write the leader's mark on the version this pass read only: a status written
        since (the node's Ready, as it comes back before its heartbeat does) is not
        overwritten; the next pass decides again."""
        try:
            marked = await patch_status(
                self.registry,
                cell,
                observe=False,
                max_conflicts=1,
                state=state,
                reason=reason,
                message=message,
                node_name=node_name,
            )
        except Conflict:
            log.debug("cell %s changed since this pass read it: not marked now", _name(cell))
            return
        if marked is not None:
            self.reads.writes.wrote(marked)

    def _place(
        self, cell: Cell, views: Mapping[str, NodeView], *, moving_from: str | None = None
    ) -> Coroutine[Any, Any, None]:
        """Choose the node now and count the cell there; the returned coroutine binds it."""
        candidates = [view for name, view in views.items() if name != moving_from]
        rule = self._rules.get(spread_key(cell) or "")
        limit = spread_limit(rule, cell, candidates) if rule is not None else None
        placement = choose_node(cell, candidates, limit)
        if placement.node is None:
            return self._unschedulable(cell, placement)
        views[placement.node].count(cell)
        previous = views.get(moving_from or "")
        if previous is not None:
            previous.count(cell, -1)
        return self._bind(cell, placement.node, moving=moving_from is not None)

    async def _bind(self, cell: Cell, node: str, *, moving: bool) -> None:
        # A drain's request to the old node is answered by the move (a lost node's cells).
        annotations = {
            **{k: v for k, v in cell.metadata.annotations.items() if k != EVICT_ANNOTATION},
            SCHEDULED_BY: SCHEDULER,
        }
        # The node's finalizer comes with the binding (one write and one watch hop fewer
        # before the node starts the cell); the node adds it itself to a cell created with
        # its nodeName. A cell being deleted takes no new finalizer.
        finalizers = list(cell.metadata.finalizers)
        if CELL_FINALIZER not in finalizers and cell.metadata.deletion_timestamp is None:
            finalizers.append(CELL_FINALIZER)
        moved = cell.model_copy(
            update={
                "spec": cell.spec.model_copy(update={"node_name": node}),
                "metadata": cell.metadata.model_copy(
                    update={"annotations": annotations, "finalizers": finalizers}
                ),
            }
        )
        try:
            bound = await self.registry.update(moved, placement=True)  # generation stays
        except (Conflict, NotFound):
            return  # changed under us: the next pass decides again (and counts again)
        except Invalid as error:  # over the document limit with the binding: said once
            if (marked := await self.refused.said(self.registry, cell, node, error)) is not None:
                self.reads.writes.wrote(marked)
            return
        # Assumed bound until the watch shows it: the next pass counts it on its node.
        self.reads.writes.wrote(bound)
        self.stats.assigned += 1
        if moving:
            self.stats.rescheduled += 1

    async def _unschedulable(self, cell: Cell, placement: Placement) -> None:
        # A node whose document does not decode is skipped by the lists: named, not left
        # out ("no node is registered" said nothing of the node that is there).
        unreadable = {key[0]: UNREADABLE_NODE for key in self.registry.invalid_under(Kind.NODE)}
        message = Placement(None, {**unreadable, **placement.reasons}).message()
        status = cell.status
        if (
            status.state == CellState.PENDING
            and status.reason == UNSCHEDULABLE
            and status.message == message
        ):
            return
        written = await patch_status(
            self.registry,
            cell,
            observe=False,
            state=CellState.PENDING,
            reason=UNSCHEDULABLE,
            message=message,
            # No node runs it: the leader writing the reason is not the cell's node (a NODE
            # column and the metrics' node label fall back to status.nodeName).
            node_name=None,
        )
        if written is not None:
            self.reads.writes.wrote(written)


def _age(cell: Cell) -> tuple[datetime, str]:
    """Oldest first (by name among cells made at the same instant)."""
    return (cell.metadata.creation_timestamp or _EPOCH, cell.metadata.name)


def held_for_a_dead_node(cell: Cell, alive: Collection[str]) -> bool:
    """A deleted cell whose finalizer waits for a node whose heartbeat lease is gone."""
    node = cell.spec.node_name
    return (
        cell.metadata.deletion_timestamp is not None
        and node is not None
        and node not in alive
        and CELL_FINALIZER in cell.metadata.finalizers
    )


def _name(cell: Cell) -> str:
    spec = cell.spec
    return "/".join((spec.realm_id, spec.space_id, spec.stack_id, cell.metadata.name))


def register_scheduler(op: Operator, scheduler: Scheduler) -> None:
    """Put ``scheduler.lead`` on ``op`` as the ``scheduler`` singleton (leader only)."""
    scheduler.use(op)

    @op.singleton(SCHEDULER)
    async def lead(_ctx: OperatorContext) -> None:
        await scheduler.lead()


def describe_placement(views: Sequence[NodeView]) -> str:
    """One line per node for logs and the benchmark: cells and free memory."""
    return ", ".join(f"{v.name}={v.cells} cells/{v.free_memory} B free" for v in views)


__all__ = [
    "NODE_LOST",
    "NODE_NOT_FOUND",
    "SCHEDULED_BY",
    "SCHEDULER",
    "UNSCHEDULABLE",
    "NodeView",
    "Placement",
    "Scheduler",
    "alive_nodes",
    "cell_memory_request",
    "choose_node",
    "filter_reason",
    "heartbeat_prefix",
    "is_scheduler_placed",
    "register_scheduler",
    "score",
    "selector_matches",
]
