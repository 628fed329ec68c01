"""Cells leaving this node: their copies here stop at once, so no cell ever runs twice.

The cell controller handles the cells this node *runs* (:func:`should_run`): assigned
here (``spec.nodeName``), not being handed back by a drain (``kukeon.io/evict-from`` naming
this node) and, while the node is fenced, pinned. Everything else that still has a
container here is a copy to stop, and :class:`Departures` stops it as soon as it sees why:

- **moved**: the cell's ``nodeName`` left this node (a user's edit, the scheduler moving it
  off this node while it was lost): its containers stop at once, all of them in parallel;
- **evicted** (``kukectl drain``): its containers stop first, *then* this node clears
  ``nodeName`` (and the annotations) by compare-and-swap, so the scheduler places the
  cell elsewhere only once its old copy is gone;
- **fenced**: the node could not renew its heartbeat lease for ``fenceAfterSeconds``
  (``daemon.node``): the scheduler-placed cells stop, with no etcd to ask (what is
  assigned here is remembered from the watch); pinned cells go on. When the lease is
  renewed again the node unfences and its controllers bring back what etcd still assigns
  to it. Neither makes a new version of a cell, so each tells ``runs_here_changed`` of
  the cells it affects (their image pulls beside the pass leave or come back);
- **stale** (:meth:`Departures.stop_stale`): at start, before the node takes its lease and
  reports Ready, every container of a cell it does not run (moved away while it was down).

The cells come from the operator's own watch (``changed``, a change listener registered
by the controllers), not from a list + watch of their own (issue 18): the same versions,
in the same order, one stream of cells per kukeond.

Stopping a copy is the orphan collector's removal (``gc``): the task gets its stop grace,
then the container is deleted; the cell's network, cgroup and files here follow once the
cell is no longer assigned here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kukeon.api import SCHEDULED_BY_ANNOTATION, AnyResource, Cell, Kind
from kukeon.api.placement import EVICT_ANNOTATION, evicted_from, is_scheduler_placed
from kukeon.cancelling import cancel_and_wait
from kukeon.framework import ConvergeGate
from kukeon.runtime.network import bridge_name
from kukeon.store import Conflict, NotFound, Registry

from .cell import CellController, cell_key
from .gc import (
    container_cell_key,
    list_node_containers,
    remove_cell_host_side,
    remove_containers,
    space_conflists,
)
from .host import Host
from .scheduler import NODE_LOST, NODE_NOT_FOUND

log = logging.getLogger(__name__)

Key = tuple[str, ...]

STOP_ROUNDS = 3
"""A reconcile already under way may create a container after the listing: list again."""
ROUND_PAUSE = 0.5


def should_run(cell: Cell, *, node: str, fenced: bool) -> bool:
    """Whether ``node`` runs ``cell`` (the cell controller's filter)."""
    if cell.spec.node_name != node or evicted_from(cell) == node:
        return False
    return not (fenced and is_scheduler_placed(cell))


def marked_lost(cell: Cell) -> bool:
    """Whether the scheduler leader marked the cell ``Unknown``/``NodeLost`` (it saw its node
    NotReady) or ``Pending``/``NodeNotFound`` (it saw no such node). A pass that read the
    node so can write it after the node is back (or has joined) and has reported the cell
    Ready again; the node's next report replaces the reason."""
    return cell.status.reason in (NODE_LOST, NODE_NOT_FOUND)


@dataclass
class Departure:
    """What one cell version means for this node's copy of it."""

    stop: bool
    """Its copy here must stop now."""
    hand_back: bool = False
    """Then clear its ``nodeName`` (drain): only after the copy is stopped."""


def departure(*, node: str, was_here: bool, cell: Cell | None) -> Departure:
    """Decide from the last known presence and the new version (None: deleted)."""
    if cell is None:
        return Departure(stop=False)  # deleted: the cell's finalizer tears it down
    if cell.spec.node_name == node:
        evicted = evicted_from(cell) == node
        return Departure(stop=evicted, hand_back=evicted)
    return Departure(stop=was_here)


def _skipped_deletion(last: Cell) -> bool:
    """Whether a cell whose key is gone went without its deletion: one that was deleted had
    its deletionTimestamp first. Its finalizers say nothing: the key goes in the same write
    that removes the last of them (``store.deletion.remove_finalizer``), so the last version
    a watcher saw of every cell deleted as it should be still holds that finalizer."""
    return last.metadata.deletion_timestamp is None


@dataclass
class DepartureStats:
    stopped: int = 0
    handed_back: int = 0
    fenced: int = 0
    stale: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)


class Departures:
    """Follows the cells assigned to this node and stops the copies of those that leave."""

    def __init__(
        self,
        *,
        host: Host,
        registry: Registry,
        cells: CellController,
        retry: float = 1.0,
    ) -> None:
        self.host = host
        self.registry = registry
        self.cells = cells
        self.node = host.settings.node_name
        self.retry = retry
        self.fenced = False
        self.assigned: dict[Key, bool] = {}
        """Cells assigned here (as last seen) -> pinned (not placed by the scheduler)."""
        self.trigger: Callable[[Kind, Key], object] = lambda kind, key: None
        self.requeue: Callable[[Cell], object] = lambda cell: self.trigger(
            Kind.CELL, cell_key(cell)
        )
        """Run a cell's reconcile with (at least) this version (``Operator.requeue``)."""
        self.vanished: Callable[[Key], object] = lambda key: None
        """A cell assigned here is gone from etcd without being deleted (no finalizer of
        its ran: its key removed by hand, etcd restored from an older snapshot, wiped):
        nothing tears its copy here down but an orphan pass (``Controllers``)."""
        self.say_fenced: Callable[[Cell, str], object] = lambda cell, message: None
        """Note on a cell brought back at the unfence that its copy here was stopped (a
        Warning Event ``Fenced``, given by ``Controllers``): at the fence etcd could not be
        written, so nothing else tells its owner that its containers stopped and started."""
        self.runs_here_changed: Callable[[Key, Cell | None], object] = lambda key, cell: None
        """Whether this node runs a cell changed with no new version of it: the fence
        (None: the cell does not run here, whatever its last version), the unfence (the
        version read then). ``Controllers`` judges the cell's image pulls again, which a
        new version alone does (a fenced cell's pull would run on to its end)."""
        self._fenced_since: datetime | None = None
        self._fenced_keys: set[Key] = set()
        self.stats = DepartureStats()
        self.gate = ConvergeGate()
        """No copy is stopped while closed (``stop_stale`` catches up once open)."""
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._again: set[Key] = set()
        self._answering: dict[Key, asyncio.Task[None]] = {}
        """Cells being read to answer the scheduler's NodeLost mark (``_answer_mark``)."""
        self._answer_again: set[Key] = set()

    def runs_here(self, cell: Cell) -> bool:
        return should_run(cell, node=self.node, fenced=self.fenced)

    def assigned_here(self, cell: Cell) -> bool:
        return cell.spec.node_name == self.node

    def finalizes_here(self, cell: Cell) -> bool:
        """Whether this node tears a deleted cell down and drops its finalizer: the node it
        is assigned to, or any node once it has none. A cell assigned to a node whose
        kukeond is gone is released by the scheduler leader (``held_for_a_dead_node``)."""
        return cell.spec.node_name in (None, self.node)

    # --- following the cells -------------------------------------------------------------

    def observe(self, key: Key, cell: Cell | None) -> None:
        """One cell version (None: deleted): remember it, start its departure if due, and
        answer the scheduler's NodeLost mark on one that runs here."""
        was_here = key in self.assigned
        decision = departure(node=self.node, was_here=was_here, cell=cell)
        if cell is not None and cell.spec.node_name == self.node:
            self.assigned[key] = not is_scheduler_placed(cell)
        else:
            self.assigned.pop(key, None)
        if decision.stop and self.gate.is_open():
            self._start(key)
        elif was_here and cell is not None and self.runs_here(cell) and marked_lost(cell):
            # (A cell that just arrived here runs its reconcile for the move anyway.)
            self._answer_mark(key)

    def _answer_mark(self, key: Key) -> None:
        self._answer_again.add(key)
        if key in self._answering:
            return  # read again once the read under way ends
        task = asyncio.create_task(self._requeue_marked(key), name=f"kukeon-remark {key[-1]}")
        self._answering[key] = task

    async def _requeue_marked(self, key: Key) -> None:
        """Requeue the cell with its version read now: a status write changes no spec, so
        the cell controller's queue would keep it without a reconcile and the cell would
        stay Unknown. Read, not the watched version: after a partition the watch may deliver
        old versions, and a cell moved away meanwhile must not run here again."""
        failures = 0
        try:
            while key in self._answer_again:
                self._answer_again.discard(key)
                try:
                    cell = await self._fresh(key)
                except Exception as error:  # etcd not answering yet: a moment later
                    failures += 1
                    log.info("cell %s: cannot read it (%r)", "/".join(key), error)
                    if failures < STOP_ROUNDS:
                        self._answer_again.add(key)
                        await asyncio.sleep(self.retry)
                    continue
                if cell is not None and self.runs_here(cell) and marked_lost(cell):
                    log.info(
                        "cell %s: marked %s by %s while it runs on node %s: reporting it again",
                        "/".join(key),
                        cell.status.reason,
                        cell.status.node_name or "the scheduler leader",
                        self.node,
                    )
                    self.requeue(cell)
        finally:
            self._answering.pop(key, None)
            self._answer_again.discard(key)

    def changed(self, cell: AnyResource, deleted: bool) -> None:
        """The operator's change listener for cells (``Operator.on_change``): every newer
        version of each cell, and its last one once deleted (or missing from a relist),
        right after the operator's own watch delivered it. No list or watch of our own."""
        if not isinstance(cell, Cell):
            return
        key = cell_key(cell)
        if (
            deleted
            and key in self.assigned
            and _skipped_deletion(cell)
            and not self._unreadable(key)
        ):
            log.warning(
                "cell %s is gone from etcd without being deleted (its last version has no "
                "deletionTimestamp): removing what it has on this node",
                "/".join(key),
            )
            self.vanished(key)
        self.observe(key, None if deleted else cell)

    def _unreadable(self, key: Key) -> bool:
        """Whether the cell's document is there but does not decode (``unreadable`` says so
        and keeps its containers): to a watcher it is gone all the same."""
        return tuple(key) in self.registry.invalid_under(Kind.CELL, key[:-1])

    def _start(self, key: Key) -> None:
        if key in self._running:
            self._again.add(key)  # decided again once the current round ends
            return
        task = asyncio.create_task(self._depart(key), name=f"kukeon-departure {'/'.join(key)}")
        self._running[key] = task

    async def stop(self) -> None:
        tasks = [*self._running.values(), *self._answering.values()]
        try:
            await cancel_and_wait(*tasks)
        finally:
            self._running.clear()
            self._answering.clear()

    async def _depart(self, key: Key) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    await self._depart_once(key)
                except Exception as error:
                    self.stats.failures += 1
                    log.warning("cell %s: stopping its copy here failed: %r", "/".join(key), error)
                    await asyncio.sleep(self.retry)
                    self._again.add(key)
                if key not in self._again:
                    return
        finally:
            self._running.pop(key, None)

    async def _depart_once(self, key: Key) -> None:
        stopped = await self.stop_copies({key})
        cell = await self._fresh(key)
        if cell is None:
            return
        decision = departure(node=self.node, was_here=True, cell=cell)
        if stopped:
            log.info("cell %s: stopped its copy on node %s", "/".join(key), self.node)
        if decision.hand_back:
            if not await self._hand_back(cell):
                return
        elif self.assigned_here(cell):
            self.trigger(Kind.CELL, key)  # no longer leaving (the eviction was withdrawn)
            return
        await self._remove_host_side(key)

    async def _fresh(self, key: Key) -> Cell | None:
        try:
            cell = await self.registry.get(Kind.CELL, key)
        except NotFound:
            return None
        return cell if isinstance(cell, Cell) else None

    async def _hand_back(self, cell: Cell) -> bool:
        """Clear ``nodeName`` (the copy here is stopped): the scheduler places it again."""
        annotations = {
            k: v
            for k, v in cell.metadata.annotations.items()
            if k not in (EVICT_ANNOTATION, SCHEDULED_BY_ANNOTATION)
        }
        released = cell.model_copy(
            update={
                "spec": cell.spec.model_copy(update={"node_name": None}),
                "metadata": cell.metadata.model_copy(update={"annotations": annotations}),
            }
        )
        try:
            await self.registry.update(released, placement=True)
        except Conflict:
            self._again.add(cell_key(cell))  # changed meanwhile: decide on the new version
            return False
        except NotFound:
            return False
        self.stats.handed_back += 1
        log.info("cell %s: copy stopped, handed back to the scheduler", "/".join(cell_key(cell)))
        return True

    async def _remove_host_side(self, key: Key) -> None:
        """The cell's network, cgroup and files here (it is not assigned here any more)."""
        conflists = await space_conflists(self.host, self.registry)
        conflist = conflists.get(bridge_name(key[0], key[1], self.host.networks.settings.instance))
        await remove_cell_host_side(self.host, key, conflist=conflist)

    # --- stopping copies -----------------------------------------------------------------

    async def stop_copies(self, keys: Collection[Key]) -> int:
        """Stop every container here of the cells ``keys``, all at once; how many went."""
        only = next(iter(keys)) if len(keys) == 1 else None
        return await self._stop_where(lambda key: key in keys, only=only)

    async def _stop_where(self, doomed: Callable[[Key], bool], *, only: Key | None = None) -> int:
        """Stop the containers whose cell is ``doomed`` (listing ``only`` that cell's)."""
        stopped = 0
        for round_ in range(STOP_ROUNDS):
            found = [
                (namespace, container)
                for namespace, container in await list_node_containers(self.host, cell=only)
                if doomed(container_cell_key(container))
            ]
            if not found:
                break
            if round_:
                await asyncio.sleep(ROUND_PAUSE)
            for what, error in await remove_containers(self.cells, found):
                if error is None:
                    stopped += 1
                else:
                    log.warning("could not stop %s: %s", what, error)
        self.stats.stopped += stopped
        return stopped

    async def stop_stale(self) -> int:
        """At start, before the node reports Ready: stop the copies of cells not run here."""
        cells = [c for c in (await self.registry.list(Kind.CELL)).items if isinstance(c, Cell)]
        wanted = {cell_key(c) for c in cells if self.runs_here(c)}
        stopped = await self._stop_where(lambda key: key not in wanted)
        self.stats.stale += stopped
        if stopped:
            log.info("stopped %d stale container(s) before reporting Ready", stopped)
        for cell in cells:
            self.observe(cell_key(cell), cell)  # evicted ones are handed back now
        return stopped

    # --- fencing ---------------------------------------------------------------------------

    def unpinned(self) -> list[Key]:
        return sorted(key for key, pinned in self.assigned.items() if not pinned)

    async def fence(self) -> int:
        """The lease could not be renewed: stop the scheduler-placed cells (no etcd needed)."""
        self.fenced = True
        keys = set(self.unpinned())
        self._fenced_since, self._fenced_keys = datetime.now(UTC), keys
        log.warning(
            "node %s fenced: stopping its %d scheduler-placed cell(s); pinned cells go on",
            self.node,
            len(keys),
        )
        for key in keys:
            self.runs_here_changed(key, None)
        stopped = await self.stop_copies(keys)
        self.stats.fenced += stopped
        return stopped

    async def unfence(self) -> None:
        """The lease is renewed again: the cells still assigned here (read now) come back.

        Read from etcd, not from what was known before the partition: a cell the
        scheduler moved meanwhile must not start here again.
        """
        if not self.fenced:
            return
        cells = [c for c in (await self.registry.list(Kind.CELL)).items if isinstance(c, Cell)]
        self.fenced = False
        back = [c for c in cells if self.runs_here(c)]
        log.info("node %s unfenced: bringing back %d cell(s)", self.node, len(back))
        for cell in cells:
            self.observe(cell_key(cell), cell)
        since = self._fenced_since.isoformat(timespec="seconds") if self._fenced_since else "?"
        stopped, self._fenced_keys = self._fenced_keys, set()
        for cell in back:
            self.runs_here_changed(cell_key(cell), cell)
            # The version just read: what was written meanwhile (the scheduler's Unknown)
            # may not have reached this node's watch yet, and must be answered now.
            self.requeue(cell)
            if cell_key(cell) in stopped:
                self.say_fenced(
                    cell,
                    f"node {self.node} fenced itself at {since}, its heartbeat lease not "
                    "renewed for fenceAfterSeconds: the cell's containers were stopped there "
                    "then, and are started again now that the lease is renewed",
                )


__all__ = ["Departure", "Departures", "departure", "marked_lost", "should_run"]
