"""The set controller: keeps each CellSet's cells as its spec says.

It runs on every kukeond but acts only on the one holding the ``cellsets`` leader lease
(``Operator.singleton``, as the scheduler). Each pass lists the sets and the cells and,
for each set, asks `cellsetplan.plan_set` what to create and delete, does it, and writes
the set's status. The sets, cells and nodes are read from the operator's cache
(``framework.cache.CachedReads``, etcd when a kind is not watched), with this loop's own
creates, deletes and status writes laid over it until the watch shows them: a pass woken
right after a create must count the new cell, or it would create another. Cells it
makes are named ``<set>-<template hash>-<5 chars>`` and labelled ``kukeon.io/cellset``
and ``kukeon.io/template-hash``; the scheduler places them like any cell without
``nodeName``. A cell whose label names a set that does not
exist in its stack (or is being deleted) is deleted: that is the set's cascade.

A cell is Ready when its state is ``Ready`` (its readiness probes pass, see
docs/probes.md); it has been Ready since ``status.readyAt``, when it last became so. A
cell that ends (``Failed``, ``Error``, ``Exited``) after it was Ready is replaced; one that failed
before it ever was (its image or command is wrong) is kept, as a copy would fail the same
way, and shows in the set's status (not Ready, so a rollout to that template stops).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

from kukeon.api import (
    CELLSET_LABEL,
    TEMPLATE_HASH_LABEL,
    Cell,
    CellSet,
    CellState,
    EventReason,
    EventType,
    Kind,
    Node,
    key_of,
    parse_resource,
)
from kukeon.api.cellset import PROGRESS_DEADLINE_EXCEEDED, CellSetCondition, CellSetStatus
from kukeon.api.spread import spread_rule
from kukeon.framework import EventRecorder, Operator, OperatorContext, Supervisor
from kukeon.framework.cache import CachedReads
from kukeon.framework.statusbound import bounded as bounded_status
from kukeon.store import (
    AlreadyExists,
    Conflict,
    Invalid,
    InvalidStoredDocument,
    NotFound,
    QuotaExceeded,
    Registry,
    WatchEvent,
)

from .cellsetbackoff import BackoffPolicy, ReplaceBackoff
from .cellsetlost import move_off_lost_nodes, not_ready, to_move
from .cellsetowners import StackOf, adopt, adoptable_by, is_adoptable, orphan, orphaning, stack_of
from .cellsetplan import (
    Member,
    Seen,
    SetCounts,
    SetPlan,
    SetShape,
    halt,
    is_complete,
    plan_set,
    record_revision,
    track_progress,
)
from .cellsetready import ReadyClocks
from .leading import LeaderLoop, Watch
from .nodelost import LostTimer
from .stopwatch import Stopwatches

log = logging.getLogger(__name__)

CELLSETS = "cellsets"
"""The leader lease's name."""
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_SUFFIX_LENGTH = 5
COMPLETE = "CellSetAvailable"
"""The reason of `Progressing=True` once every cell is up to date and available."""
_ENDED = frozenset({CellState.FAILED, CellState.ERROR, CellState.EXITED})
"""States a cell does not leave by itself (no restart left): it is replaced."""

StackKey = tuple[str, ...]
"""(realm, space, stack, set): a set's key."""
CellAdmission = Callable[[CellSet], Awaitable[str | None]]
"""Why a set's new cells are refused at its realm's security level now, None when they
may be created (kukeond passes the API server's ``Admission.cell_refusal``)."""
WRITES_IN_FLIGHT = 32
"""A pass's cell creates and deletes sent to etcd at once (as the scheduler's writes): one
at a time, a 300-replica set took 84 s to create on a loaded 3-member etcd
(bench/fleet_bench.py --cellset). Deletes were kept one at a time while any node could run
a deleted cell's finalizer first (docs/benchmarks/fleet-cellset.md); only its own node
does now (``Departures.finalizes_here``)."""


async def _all_written(writes: Sequence[Awaitable[None]]) -> None:
    """Await every write, WRITES_IN_FLIGHT at a time; then raise the first error, if any."""
    gate = asyncio.Semaphore(WRITES_IN_FLIGHT)

    async def bounded(write: Awaitable[None]) -> None:
        async with gate:
            await write

    results = await asyncio.gather(*(bounded(w) for w in writes), return_exceptions=True)
    if errors := [r for r in results if isinstance(r, BaseException)]:
        raise errors[0]


def _now() -> datetime:
    return datetime.now(UTC)


def owner_key(cell: Cell) -> StackKey | None:
    """(realm, space, stack, set) of the set that owns ``cell``, or None."""
    owner = cell.metadata.labels.get(CELLSET_LABEL)
    if not owner:
        return None
    spec = cell.spec
    return (spec.realm_id, spec.space_id, spec.stack_id, owner)


def member_of(cell: Cell, domain: str | None = None) -> Member:
    status = cell.status
    return Member(
        name=cell.metadata.name,
        template_hash=cell.metadata.labels.get(TEMPLATE_HASH_LABEL, ""),
        created=cell.metadata.creation_timestamp or datetime.fromtimestamp(0, UTC),
        ready=status.state == CellState.READY,
        ready_since=status.ready_at,
        # Replaced only after it ran: a cell that never got Ready failed by its template
        # (an image, a command), which a new copy would fail again.
        failed=status.state in _ENDED and status.ready_at is not None,
        deleting=cell.metadata.deletion_timestamp is not None,
        domain=domain,
        restarts=max((c.restart_count for c in status.containers), default=0),
    )


def shape_of(cellset: CellSet) -> SetShape:
    surge, unavailable = cellset.spec.surge_and_unavailable()
    return SetShape(
        replicas=cellset.spec.replicas,
        strategy=cellset.spec.strategy.type,
        max_surge=surge,
        max_unavailable=unavailable,
        min_ready_seconds=cellset.spec.min_ready_seconds,
    )


def seen_of(cellset: CellSet) -> Seen:
    """What the set's last status said, for `track_progress`."""
    status = cellset.status
    progressing = next((c for c in status.conditions if c.type == "Progressing"), None)
    return Seen(
        template_hash=status.template_hash,
        generation=status.observed_generation,
        counts=SetCounts(
            replicas=status.replicas,
            ready=status.ready_replicas,
            updated=status.updated_replicas,
            available=status.available_replicas,
        ),
        since=progressing.last_update_time if progressing is not None else None,
        complete=progressing is not None and progressing.reason == COMPLETE,
        exceeded=progressing is not None and progressing.reason == PROGRESS_DEADLINE_EXCEEDED,
    )


def _progressing(
    cellset: CellSet, plan: SetPlan, since: datetime, exceeded: bool
) -> CellSetCondition:
    counts, replicas = plan.counts, cellset.spec.replicas
    at = f"{counts.updated} of {replicas} cells updated, {counts.available} available"
    if is_complete(plan, replicas):
        state = ("True", COMPLETE, "every cell is up to date and available")
    elif exceeded:
        deadline = cellset.spec.progress_deadline_seconds
        why = f"no progress for {deadline}s ({at}): the rollout is stopped, the old cells serve"
        state = ("False", PROGRESS_DEADLINE_EXCEEDED, why)
    elif plan.rolling:
        state = ("True", "RollingUpdate", at)
    else:
        why = f"{counts.replicas} cells for {replicas} replicas, {counts.available} available"
        state = ("True", "Scaling", why)
    return CellSetCondition(
        type="Progressing",
        status=state[0],
        reason=state[1],
        message=state[2],
        last_update_time=since,
    )


def status_of(
    cellset: CellSet,
    hash_: str,
    plan: SetPlan,
    now: datetime,
    *,
    since: datetime | None = None,
    exceeded: bool = False,
    failure: str | None = None,
) -> CellSetStatus:
    """The set's status after ``plan``: counts, conditions (times kept when unchanged).
    ``since`` is when it last progressed; ``exceeded`` that its deadline passed since;
    ``failure`` why cells could not be created (a ``ReplicaFailure`` condition)."""
    counts = plan.counts
    replicas = cellset.spec.replicas
    _, unavailable = cellset.spec.surge_and_unavailable()
    available = counts.available >= replicas - unavailable
    wanted = [
        CellSetCondition(
            type="Available",
            status="True" if available else "False",
            reason="MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            message=f"{counts.available} available, at least {replicas - unavailable} needed",
        ),
        _progressing(cellset, plan, since or now, exceeded),
    ]
    if failure is not None:
        wanted.append(
            CellSetCondition(
                type="ReplicaFailure", status="True", reason="FailedCreate", message=failure
            )
        )
    previous = {c.type: c for c in cellset.status.conditions}
    conditions = []
    for condition in wanted:
        before = previous.get(condition.type)
        same = before is not None and before.status == condition.status
        at = before.last_transition_time if same and before is not None else now
        conditions.append(condition.model_copy(update={"last_transition_time": at}))
    return CellSetStatus(
        replicas=counts.replicas,
        ready_replicas=counts.ready,
        updated_replicas=counts.updated,
        available_replicas=counts.available,
        observed_generation=cellset.metadata.generation,
        template_hash=hash_,
        conditions=conditions,
        revisions=record_revision(cellset, hash_),
    )


def _same_status(a: CellSetStatus, b: CellSetStatus) -> bool:
    """Equal but for the conditions' transition times (a time alone is no news)."""

    def conditions(status: CellSetStatus) -> list[tuple[object, ...]]:
        return [
            (c.type, c.status, c.reason, c.message, c.last_update_time) for c in status.conditions
        ]

    return a.model_dump(exclude={"conditions"}) == b.model_dump(
        exclude={"conditions"}
    ) and conditions(a) == conditions(b)


class Progress(NamedTuple):
    since: datetime
    """When the set last progressed (the `Progressing` condition's `lastUpdateTime`)."""
    moved: bool
    """It progressed since its last status."""
    running: bool
    """Its deadline runs: not complete, and no old cell on its way out."""


def progress_of(cellset: CellSet, hash_: str, plan: SetPlan, now: datetime) -> Progress:
    """When the set last progressed, whether it just did, and whether its deadline runs."""
    seen = seen_of(cellset)
    if is_complete(plan, cellset.spec.replicas):
        since = seen.since if seen.complete and seen.since is not None else now
        return Progress(since, moved=False, running=False)
    if plan.old_leaving:  # waiting for an old cell's stop is the rollout's own step
        return Progress(now, moved=True, running=False)
    since, moved = track_progress(seen, hash_, cellset.metadata.generation, plan.counts, now)
    return Progress(since, moved=moved, running=True)


class CellSetController:
    """One leader's passes over every CellSet."""

    def __init__(
        self,
        *,
        registry: Registry,
        interval: float = 1.0,
        clock: Callable[[], datetime] = _now,
        monotonic: Callable[[], float] = time.monotonic,
        backoff_policy: BackoffPolicy | None = None,
        recorder: EventRecorder | None = None,
        admission: CellAdmission | None = None,
    ) -> None:
        self.registry = registry
        self.admission = admission
        """Asked before a pass creates any cell of a set (none: every create is let
        through, as for a set an admin wrote)."""
        self.recorder = recorder
        """Notes each cell a set creates or deletes, and a create refused, on the set."""
        self.interval = interval
        self._clock = clock
        self._monotonic = monotonic
        self.lost = LostTimer(monotonic)
        """How long each node has been NotReady, by this leader's monotonic clock."""
        self.stalled: Stopwatches[StackKey] = Stopwatches(monotonic)
        """How long each set's rollout has gone without progress, by this leader's
        monotonic clock from when it first saw the set at its last progress: the status's
        time is shown, never measured (a step of the wall clock would halt a rollout at
        once, or hold a stalled one for as long as the step)."""
        self.ready: ReadyClocks[StackKey] = ReadyClocks(monotonic)
        """How long each set's Ready cells have been so, for ``minReadySeconds``."""
        self._loop = LeaderLoop(what="cell set pass", registry=registry, interval=interval)
        self.reads = CachedReads(registry)
        """The per-pass lists (the operator's cache once registered on one)."""
        self.passes = 0
        self.tasks: Supervisor | None = None
        self.backoff_policy = backoff_policy or BackoffPolicy()
        self._backoffs: dict[StackKey, ReplaceBackoff] = {}
        self._refused: dict[StackKey, str] = {}
        """The last write the store refused per set (said once while it repeats)."""
        self._unreadable: set[StackKey] = set()
        """Sets whose stored document does not decode, their cells kept (said once)."""

    def wake(self) -> None:
        self._loop.wake()

    def use(self, op: Operator) -> None:
        """Run on ``op``: its supervisor, its cache of sets, cells and nodes, its watches."""
        self.tasks = op.tasks
        self.reads.source = lambda: op.cache
        op.watch(Kind.NODE)
        self._loop.watch_with(op, self.watches())

    def watches(self) -> list[Watch]:
        return [
            Watch(f"kukeon-cellsets-watch {kind.value}", kind, _concerns_a_set)
            for kind in (Kind.CELL_SET, Kind.CELL)
        ]

    async def lead(self) -> None:
        """A pass at every wake-up (a set or one of its cells changed), at least every
        ``interval`` (``LeaderLoop``)."""
        # What a node's loss, a rollout's stall or a cell's readiness lasted before this
        # term is not known here: each is counted afresh (a decision comes later, never
        # earlier, than on a leader that saw it all).
        self.lost.restart()
        self.stalled.restart()
        self.ready.restart()
        for backoff in self._backoffs.values():
            backoff.restart()
        await self._loop.lead(lambda woken: self.run_pass(woken=woken), self.watches(), self.tasks)

    async def run_pass(self, *, woken: bool = True) -> None:
        """One pass over every set and the cells they own. A pass the interval brought
        (``woken`` False) with no set stored does not list the cells: an orphan (a cell of
        a deleted set) is found by the pass its set's deletion wakes, and listing and
        parsing every cell of the fleet each second is most of an idle leader's CPU."""
        self.passes += 1
        sets = [s for s in await self.reads.list(Kind.CELL_SET) if isinstance(s, CellSet)]
        if not sets and not woken:
            return
        lost = await self._lost_nodes() if sets else {}
        owned: dict[StackKey, list[Cell]] = {}
        unowned: dict[StackOf, list[Cell]] = {}
        for cell in await self.reads.list(Kind.CELL):
            if not isinstance(cell, Cell):
                continue
            if (owner := owner_key(cell)) is not None:
                owned.setdefault(owner, []).append(cell)
            elif is_adoptable(cell):
                unowned.setdefault(stack_of(cell), []).append(cell)
        for cellset in sets:
            cells = owned.pop(key_of(cellset), [])
            if orphaning(cellset):
                await orphan(self.registry, cellset, cells)
            elif cellset.metadata.deletion_timestamp is not None:
                owned[key_of(cellset)] = cells
            elif adopted := adoptable_by(cellset, unowned):
                await adopt(self.registry, cellset, adopted)  # counted from the next pass
                self.wake()
            else:
                await move_off_lost_nodes(self.registry, to_move(cellset, cells, lost))
                await self._reconcile_quietly(cellset, cells)
        listed = {key_of(s) for s in sets}
        unreadable = set(self._unreadable)
        self._unreadable.clear()
        for owner, orphans in owned.items():
            if owner in listed or await self._set_gone(owner, orphans, said=unreadable):
                await self._delete([c for c in orphans if c.metadata.deletion_timestamp is None])
        live = {key_of(s) for s in sets}
        self._backoffs = {key: b for key, b in self._backoffs.items() if key in live}
        self._refused = {key: said for key, said in self._refused.items() if key in live}
        self.stalled.retain(live)
        self.ready.retain(live)

    async def _set_gone(
        self, owner: StackKey, cells: Sequence[Cell], *, said: set[StackKey]
    ) -> bool:
        """Whether the set a cell names is really gone (or being deleted): asked of etcd when
        the sets came from the cache, whose watch of sets may lag its watch of cells (a set
        and its first cell created together must not lose the cell).

        A set whose stored document does not decode (put by hand, a truncated restore) is
        not gone: lists skip it, which took it for deleted and deleted its cells (or, read
        by name, failed every pass, each second). Its cells are kept, unmanaged, until its
        key holds a valid set again or is deleted; said once (``said``: the last pass's)."""
        if owner in self.registry.invalid_under(Kind.CELL_SET, owner[:-1]):
            return self._kept_unreadable(owner, cells, said)
        if not self.reads.covers(Kind.CELL_SET):
            return True
        try:
            cellset = await self.registry.get(Kind.CELL_SET, owner)
        except NotFound:
            return True
        except InvalidStoredDocument:
            return self._kept_unreadable(owner, cells, said)
        assert isinstance(cellset, CellSet)
        return cellset.metadata.deletion_timestamp is not None and not orphaning(cellset)

    def _kept_unreadable(self, owner: StackKey, cells: Sequence[Cell], said: set[StackKey]) -> bool:
        self._unreadable.add(owner)
        if owner not in said:
            log.warning(
                "cell set %s: its stored document is invalid (the registry's warning says "
                "why); its %d cell(s) are kept, unmanaged, until it is fixed or deleted",
                "/".join(owner),
                len(cells),
            )
        return False

    async def _lost_nodes(self) -> dict[str, float]:
        nodes = await self.reads.list(Kind.NODE)
        return self.lost.observe(not_ready(n for n in nodes if isinstance(n, Node)))

    async def _reconcile_quietly(self, cellset: CellSet, cells: Sequence[Cell]) -> None:
        try:
            await self.reconcile(cellset, cells)
            self._refused.pop(key_of(cellset), None)
        except (Conflict, NotFound, AlreadyExists) as error:
            log.info("cell set %s changed under us (%s)", _label(cellset), error)
        except Invalid as error:
            # The store refuses what this set's pass writes (its status over the document
            # limit: a template too large to keep in its revisions as well as its spec).
            # Said once while it repeats; the pass goes on to the other sets (the error
            # ended the pass there, the sets after it never reconciled, and a warning
            # said so at every pass, each second).
            said = str(error)
            key = key_of(cellset)
            repeated = self._refused.get(key) == said
            self._refused[key] = said
            log.log(
                logging.DEBUG if repeated else logging.WARNING,
                "cell set %s: the store refused a write: %s",
                _label(cellset),
                said,
            )
            if not repeated:
                message = f"the store refused a write of the set: {said}"
                self._note(cellset, EventReason.FAILED, message, type=EventType.WARNING)

    async def _domains(self, cellset: CellSet, cells: Sequence[Cell]) -> dict[str, str | None]:
        """Each placed cell's spread domain, as the scheduler counts it (`SpreadRule`): what
        lets a scale-down take from the domains holding the most (`removal_order`)."""
        rule = spread_rule(cellset)
        if rule.topology_key is None:
            return {c.metadata.name: c.spec.node_name for c in cells if c.spec.node_name}
        nodes = {
            n.metadata.name: n for n in await self.reads.list(Kind.NODE) if isinstance(n, Node)
        }
        return {
            c.metadata.name: rule.domain_of(node.metadata.name, node.metadata.labels)
            for c in cells
            if c.spec.node_name and (node := nodes.get(c.spec.node_name)) is not None
        }

    async def reconcile(self, cellset: CellSet, cells: Sequence[Cell]) -> None:
        now = self._clock()
        hash_ = cellset.template_hash()
        domains = await self._domains(cellset, cells)
        members = [member_of(c, domains.get(c.metadata.name)) for c in cells]
        backoff = self._backoffs.get(key_of(cellset))
        if backoff is None:
            backoff = ReplaceBackoff(self.backoff_policy, self._monotonic)
            self._backoffs[key_of(cellset)] = backoff
        members = self.ready.counted(key_of(cellset), members, cellset.spec.min_ready_seconds, now)
        backoff.settle(members, cellset.spec.min_ready_seconds)
        plan = plan_set(shape_of(cellset), hash_, members, now)
        backoff.failed(sum(1 for m in members if m.failed and not m.deleting), members)
        if plan.create and (wait := backoff.holding()) > 0:
            log.info("cell set %s: replacements back off, %.1fs to wait", _label(cellset), wait)
            plan = replace(plan, create=0)
        progress = progress_of(cellset, hash_, plan, now)
        since, exceeded = progress.since, self._deadline_passed(cellset, progress)
        if exceeded and plan.rolling:
            if plan.create:
                log.info("cell set %s: progress deadline exceeded, not creating", _label(cellset))
            plan = halt(plan)
        by_name = {c.metadata.name: c for c in cells}
        if plan.create or plan.delete:
            # Said once, not at every pass, while the realm's quota refuses the creates.
            log.log(
                logging.DEBUG if _failing_creates(cellset) and not plan.delete else logging.INFO,
                "cell set %s: creating %d, deleting %s",
                _label(cellset),
                plan.create,
                ", ".join(plan.delete) or "none",
            )
        failure = await self._admitted(cellset, plan.create)
        if failure is not None:
            plan = replace(plan, create=0)
        else:
            failure = await self._create_all(cellset, hash_, plan.create)
        await self._delete([by_name[name] for name in plan.delete], of_set=cellset)
        status = status_of(
            cellset, hash_, plan, now, since=since, exceeded=exceeded, failure=failure
        )
        status = bounded_status(cellset.model_copy(update={"status": status})).status
        if not _same_status(status, cellset.status):
            written = await self.registry.update_status(
                cellset.model_copy(update={"status": status})
            )
            self.reads.writes.wrote(written)

    def _deadline_passed(self, cellset: CellSet, progress: Progress) -> bool:
        """Whether the set has gone ``progressDeadlineSeconds`` without progress, counted
        by ``stalled`` from when this leader first saw it at its last progress. A deadline
        a leader found passed (the status says so) stands until the set moves: a new
        leader counting afresh would otherwise resume a halted rollout for another
        deadline."""
        key = key_of(cellset)
        if not progress.running:
            self.stalled.forget(key)
            return False
        if not progress.moved and seen_of(cellset).exceeded:
            return True
        stalled_for = self.stalled.elapsed(key, progress.since)
        return stalled_for >= cellset.spec.progress_deadline_seconds

    async def _admitted(self, cellset: CellSet, count: int) -> str | None:
        """Why the ``count`` cells to create are refused by the realm's security level
        (``admission``), else None. Asked only when the pass would create: cells already
        there run on (Kubernetes leaves running pods alone at a level change). A refusal
        is the set's ReplicaFailure (FailedCreate) and, once while it repeats, an Event;
        it is asked again at each pass that would create, so the set converges as soon
        as its template is fixed or the level raised."""
        if not count or self.admission is None:
            return None
        refusal = await self.admission(cellset)
        if refusal is not None and refusal not in _create_failures(cellset):
            log.warning("cell set %s: %s", _label(cellset), refusal)
            self._note(cellset, EventReason.FAILED_CREATE, refusal, type=EventType.WARNING)
        return refusal

    async def _create_all(self, cellset: CellSet, hash_: str, count: int) -> str | None:
        """Create ``count`` cells; why some could not be (the realm's quota), else None.
        Refused creates are tried again at the next pass, as Kubernetes' ReplicaSet does.

        ``WRITES_IN_FLIGHT`` workers share the count, and none starts another create once
        the quota refused one: a set far over its realm's quota asked for every missing
        cell at every pass, each parsed and encoded before its refusal (10,000 replicas:
        ~2 s of CPU a pass, a pass a second)."""
        left = count
        refused: QuotaExceeded | None = None

        async def worker() -> None:
            nonlocal left, refused
            while left > 0 and refused is None:
                left -= 1
                try:
                    await self._create(cellset, hash_)
                except QuotaExceeded as error:
                    refused = error

        await _all_written([worker() for _ in range(min(count, WRITES_IN_FLIGHT))])
        if refused is None:
            return None
        message = _quota_message(cellset, refused)
        if not _failing_creates(cellset):
            log.warning("cell set %s: %s", _label(cellset), refused)
            self._note(cellset, EventReason.FAILED_CREATE, message, type=EventType.WARNING)
        return message

    async def _create(self, cellset: CellSet, hash_: str) -> None:
        for _ in range(5):
            suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(_SUFFIX_LENGTH))
            name = f"{cellset.metadata.name}-{hash_}-{suffix}"
            cell = parse_resource(cellset.cell_document(name, hash_))
            try:
                self.reads.writes.wrote(await self.registry.create(cell))
            except AlreadyExists:
                continue
            self._note(cellset, EventReason.SUCCESSFUL_CREATE, f"created cell {name}")
            return

    async def _delete(self, cells: Sequence[Cell], *, of_set: CellSet | None = None) -> None:
        """Delete ``cells``; ``of_set``, the set that asked (none for the cells of a set
        that is gone), is told of each in an Event."""
        await _all_written([self._delete_one(cell, of_set) for cell in cells])

    async def _delete_one(self, cell: Cell, of_set: CellSet | None) -> None:
        try:
            marked = await self.registry.delete(Kind.CELL, key_of(cell))
        except NotFound:
            return
        if marked is None:
            self.reads.writes.removed(cell)
        else:
            self.reads.writes.wrote(marked)
        if of_set is not None:
            self._note(of_set, EventReason.SUCCESSFUL_DELETE, f"deleted cell {cell.metadata.name}")

    def _note(
        self,
        cellset: CellSet,
        reason: EventReason,
        message: str,
        *,
        type: EventType = EventType.NORMAL,
    ) -> None:
        """An Event on the set (as Kubernetes' ReplicaSet controller writes): queued, never
        awaited (see framework.recorder)."""
        if self.recorder is not None:
            self.recorder.event(cellset, reason, message, type=type)


def _concerns_a_set(event: WatchEvent) -> bool:
    obj = event.object
    return not isinstance(obj, Cell) or CELLSET_LABEL in obj.metadata.labels


def _quota_message(cellset: CellSet, refused: QuotaExceeded) -> str:
    """The ReplicaFailure's message: the limit, not the refused cell, whose name is drawn
    anew at each pass (naming it, each pass wrote a new status while the quota held)."""
    causes = "; ".join(f"{c.field}: {c.message}" for c in refused.causes)
    if not causes:
        return str(refused)
    return (
        f'the set\'s cells would exceed the quota of realm "{key_of(cellset)[0]}" ({causes}); '
        "delete some of its objects or ask an admin to raise the quota"
    )


def _failing_creates(cellset: CellSet) -> bool:
    """Whether the set's status already says its cells could not be created."""
    return bool(_create_failures(cellset))


def _create_failures(cellset: CellSet) -> list[str]:
    """The messages of the set's status saying its cells could not be created."""
    return [c.message or "" for c in cellset.status.conditions if c.reason == "FailedCreate"]


def _label(cellset: CellSet) -> str:
    return "/".join(key_of(cellset))


def register_cellsets(op: Operator, controller: CellSetController) -> None:
    """Put ``controller.lead`` on ``op`` as the ``cellsets`` singleton (leader only)."""
    controller.use(op)

    @op.singleton(CELLSETS)
    async def lead(_ctx: OperatorContext) -> None:
        await controller.lead()


__all__ = [
    "CELLSETS",
    "CellAdmission",
    "CellSetController",
    "member_of",
    "owner_key",
    "register_cellsets",
]
