"""The decisions of the set controller, pure: given a set and its cells, what to do.

`plan_set` takes the set's spec (as `SetShape`), the hash of its current template, a
`Member` per cell the set owns and the clock, and returns a `SetPlan`: how many cells of
the current template to create, which cells to delete, and the status to report.

- A cell that ended `Failed` is deleted (and so replaced, in the same plan).
- Scaling (no old cells): a surplus goes not-Ready cells first, then one at a time a
  cell of the spread domain holding the most of them, the most recently Ready (then the
  most restarted, then the newest) first (`removal_order`).
- `RollingUpdate`: new cells are created while the total stays within `replicas +
  maxSurge`; old cells go while at least `replicas - maxUnavailable` cells stay available
  (Ready, and for a new cell Ready for `minReadySeconds`, as the controller counts it on its
  monotonic clock: `cellsetready`), unavailable old cells first.
- `Recreate`: every old cell is deleted, and new ones are made only once none is left.
- A cell being deleted counts against `maxSurge` until it is gone, and nowhere else.

`track_progress` says whether the set moved since its last status (a new template or
generation, more updated or available cells, fewer old ones) and so when it last did; a
rollout that has not moved for `progressDeadlineSeconds` (counted by the controller on its
monotonic clock, `stopwatch`, not from that time) is *halted*: `halt` takes the creations
out of its plan (old cells still go only as availability allows). While an old cell is
being deleted (its stop may take its whole grace) the rollout is progressing: its clock
starts again when the last one is gone.

`record_revision` keeps the set's template revisions (in its status): the current
template last, numbered one above the highest so far (a template seen before, as after an
undo, moves up with a new number), and at most `revisionHistoryLimit` earlier ones, fewer
when their templates would weigh more than `REVISIONS_MAX_BYTES` (half of what a stored
document may weigh) with the current one.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from kukeon.api import to_document
from kukeon.api.cellset import CHANGE_CAUSE_ANNOTATION, CellSet, CellSetRevision, StrategyType
from kukeon.store import MAX_DOCUMENT_BYTES, STATUS_RESERVE_BYTES

REVISIONS_MAX_BYTES = MAX_DOCUMENT_BYTES // 2
"""What the templates kept in a set's status may weigh in all (the oldest go first)."""


@dataclass(frozen=True)
class SetShape:
    replicas: int
    strategy: StrategyType
    max_surge: int
    max_unavailable: int
    min_ready_seconds: int


@dataclass(frozen=True)
class Member:
    """One cell of the set, as the planner needs it."""

    name: str
    template_hash: str
    created: datetime
    ready: bool
    ready_since: datetime | None
    failed: bool
    deleting: bool = False
    """Being deleted: still counts against `maxSurge` until it is gone."""
    domain: str | None = None
    """The spread domain it runs in (its node, or its node's value of the set's topology
    label); None when unplaced or unknown: such cells count as one domain."""
    restarts: int = 0
    """The most restarts of any of its containers (Kubernetes' `maxContainerRestarts`)."""
    ready_for: float | None = None
    """Seconds Ready as the leader counts them (`cellsetready`, monotonic); None: now minus
    `ready_since` on the wall clock (a planner given no count)."""


@dataclass(frozen=True)
class SetCounts:
    replicas: int
    ready: int
    updated: int
    available: int


@dataclass(frozen=True)
class SetPlan:
    create: int
    delete: tuple[str, ...]
    counts: SetCounts
    rolling: bool
    """Old cells remain: a rollout is under way."""
    notes: tuple[str, ...] = field(default=())
    old_leaving: bool = False
    """A cell of an earlier template is being deleted (its stop may take the cell's whole
    grace, up to an hour): the rollout is waiting on its own step, not stalled."""


def is_available(member: Member, min_ready_seconds: int, now: datetime) -> bool:
    if not member.ready:
        return False
    if min_ready_seconds == 0:
        return True
    if member.ready_for is not None:
        return member.ready_for >= min_ready_seconds
    since = member.ready_since or now
    return now - since >= timedelta(seconds=min_ready_seconds)


def removal_order(members: Sequence[Member], now: datetime) -> list[Member]:
    """The order in which a surplus goes, as a ReplicaSet ranks the pods it deletes where a
    set has the same facts (`ActivePodsWithRanks`):

    - not-Ready cells first: those of the domain holding the most of the set's cells, then
      the most restarted, then the newest;
    - then the Ready ones, one at a time from the domain that holds the most of them then;
      within a domain (and between domains holding as many) the most recently Ready first,
      by powers of two of how long ago (Kubernetes' logarithmic scale-down: Ready 40 and
      50 minutes ago are alike, 1 and 50 are not), then the most restarted, then the
      newest. Where Kubernetes picks at random among pods of one such age (by uid), this
      goes on to restarts and creation, so the order is the same on every pass.

    Counting the domains one removal at a time (where a ReplicaSet counts them once) is
    what keeps a scale-down spread whatever order the cells were placed in: 3 cells on
    each of 3 nodes scaled to 3 keeps one cell of each node, not the 3 oldest, which need
    not be on 3 nodes. With one domain it is most recently Ready first."""
    held = Counter(m.domain for m in members)
    unready = [m for m in members if not m.ready]
    order = sorted(unready, key=lambda m: (-held[m.domain], *_goes_first(m, now)))
    held.subtract(m.domain for m in order)
    queues: dict[str | None, deque[Member]] = {}
    for member in sorted((m for m in members if m.ready), key=lambda m: _goes_first(m, now)):
        queues.setdefault(member.domain, deque()).append(member)
    # The heap's entries: the domain's count then (negated), its first cell's rank, index.
    heads = [
        (-held[domain], _goes_first(queue[0], now), i)
        for i, (domain, queue) in enumerate(queues.items())
    ]
    domains = list(queues)
    heapq.heapify(heads)
    while heads:
        _, _, i = heapq.heappop(heads)
        queue = queues[domains[i]]
        order.append(queue.popleft())
        held[domains[i]] -= 1
        if queue:
            heapq.heappush(heads, (-held[domains[i]], _goes_first(queue[0], now), i))
    return order


def _goes_first(member: Member, now: datetime) -> tuple[int, int, float, str]:
    """A sort key putting first, among cells of one readiness, the most recently Ready (by
    `ready_age_rank`), then the most restarted, then the newest, then the first named."""
    age_rank = ready_age_rank(member.ready_since, now) if member.ready else 0
    return (age_rank, -member.restarts, -member.created.timestamp(), member.name)


def ready_age_rank(ready_since: datetime | None, now: datetime) -> int:
    """How long a cell has been Ready, as Kubernetes' `logarithmicRankDiff` ranks it: the
    power of two of the nanoseconds since (-1 for none or a time ahead of ``now``); an
    unknown time ranks below every other (Kubernetes' zero time: the first to go)."""
    if ready_since is None:
        return -2
    age = now - ready_since
    nanoseconds = (age.days * 86_400 + age.seconds) * 10**9 + age.microseconds * 1000
    return nanoseconds.bit_length() - 1 if nanoseconds > 0 else -1


def plan_set(
    shape: SetShape, current_hash: str, members: Sequence[Member], now: datetime
) -> SetPlan:
    leaving = sum(1 for m in members if m.deleting)
    failed = [m for m in members if m.failed and not m.deleting]
    alive = [m for m in members if not m.failed and not m.deleting]
    new = [m for m in alive if m.template_hash == current_hash]
    old = [m for m in alive if m.template_hash != current_hash]
    available = [m for m in alive if is_available(m, shape.min_ready_seconds, now)]
    counts = SetCounts(
        replicas=len(alive),
        ready=sum(1 for m in alive if m.ready),
        updated=len(new),
        available=len(available),
    )
    delete = [m.name for m in failed]
    old_leaving = any(m.deleting and m.template_hash != current_hash for m in members)
    if not old:
        create, surplus = _scale(shape.replicas, new, now)
        if shape.strategy == StrategyType.RECREATE and old_leaving:
            create = 0  # the old copies are not gone yet
        return SetPlan(create, (*delete, *surplus), counts, rolling=False, old_leaving=old_leaving)
    if shape.strategy == StrategyType.RECREATE:
        # Every old cell first; new ones once the old are gone (a later plan).
        gone_old = (*delete, *(m.name for m in old))
        return SetPlan(0, gone_old, counts, rolling=True, old_leaving=old_leaving)
    room = shape.replicas + shape.max_surge - len(alive) - leaving
    create = max(0, min(room, shape.replicas - len(new)))
    surplus_new = [m.name for m in removal_order(new, now)[: max(0, len(new) - shape.replicas)]]
    removable = len(available) - (shape.replicas - shape.max_unavailable)
    gone: list[str] = []
    for member in removal_order(old, now):
        if not is_available(member, shape.min_ready_seconds, now):
            gone.append(member.name)  # losing it costs no availability
        elif removable > 0:
            gone.append(member.name)
            removable -= 1
    return SetPlan(
        create, (*delete, *surplus_new, *gone), counts, rolling=True, old_leaving=old_leaving
    )


def _scale(replicas: int, new: Sequence[Member], now: datetime) -> tuple[int, list[str]]:
    if len(new) < replicas:
        return replicas - len(new), []
    return 0, [m.name for m in removal_order(new, now)[: len(new) - replicas]]


@dataclass(frozen=True)
class Seen:
    """What the set's last written status said, as progress is measured against it."""

    template_hash: str | None
    generation: int
    counts: SetCounts
    since: datetime | None
    """When it last progressed (the `Progressing` condition's `lastUpdateTime`)."""
    complete: bool
    """Every cell was up to date and available: the deadline was not running."""
    exceeded: bool = False
    """It said `ProgressDeadlineExceeded`: a leader found the deadline passed."""


def track_progress(
    seen: Seen, hash_: str, generation: int, counts: SetCounts, now: datetime
) -> tuple[datetime, bool]:
    """When the set last progressed (``now`` if it moved since ``seen``), and whether it
    moved. How long ago that was is not measured here: the wall clock may have stepped."""
    before = seen.counts
    moved = (
        seen.since is None
        or seen.complete
        or seen.template_hash != hash_
        or seen.generation != generation
        or counts.updated > before.updated
        or counts.available > before.available
        or counts.replicas - counts.updated < before.replicas - before.updated
    )
    if moved:
        return now, True
    assert seen.since is not None
    return seen.since, False


def is_complete(plan: SetPlan, replicas: int) -> bool:
    counts = plan.counts
    return not plan.rolling and counts.updated == replicas == counts.available


def halt(plan: SetPlan) -> SetPlan:
    """``plan`` without its creations: a stalled rollout makes no more new cells."""
    return replace(plan, create=0, notes=(*plan.notes, "halted: progress deadline exceeded"))


def record_revision(cellset: CellSet, hash_: str) -> list[CellSetRevision]:
    """The set's revisions with its current template (``hash_``) as the latest."""
    revisions = list(cellset.status.revisions)
    if revisions and revisions[-1].template_hash == hash_:
        return revisions
    number = max((r.revision for r in revisions), default=0) + 1
    kept = [r for r in revisions if r.template_hash != hash_]
    current = CellSetRevision(
        revision=number,
        template_hash=hash_,
        change_cause=cellset.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION),
        template=cellset.template_document(),
    )
    limit = cellset.spec.revision_history_limit
    earlier = kept[len(kept) - limit :] if limit else []
    budget = min(REVISIONS_MAX_BYTES, _room_for_revisions(cellset)) - _size(current)
    while earlier and sum(_size(r) for r in earlier) > budget:
        earlier = earlier[1:]  # the oldest goes first
    return [*earlier, current]


def _room_for_revisions(cellset: CellSet) -> int:
    """What the set's document leaves for its kept templates: the store's limit less the
    document without its status and the room kept for the rest of the status (a 300 KB
    template beside 200 KB of annotations kept an older 200 KB template after a rollout,
    and the status was over the limit: every status write refused)."""
    document = to_document(cellset)
    document.pop("status", None)
    spec = len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())
    return MAX_DOCUMENT_BYTES - STATUS_RESERVE_BYTES - spec


def _size(revision: CellSetRevision) -> int:
    return len(json.dumps(revision.template, separators=(",", ":"), ensure_ascii=False).encode())
