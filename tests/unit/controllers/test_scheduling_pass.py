"""The scheduler's pass over an in-memory store: placement by compare-and-swap, an
Unschedulable reason per node, lost nodes marked NotReady, their scheduler-placed cells
moved after the timeout (pinned ones wait, Unknown), gone nodes released."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from kukeon.api import (
    CELLSET_LABEL,
    SCHEDULED_BY_ANNOTATION,
    Cell,
    CellState,
    Kind,
    Node,
    NodeState,
    parse_resource,
)
from kukeon.controllers import scheduler as scheduling
from kukeon.controllers.layers import node_finalizer
from kukeon.controllers.scheduler import (
    NODE_LOST,
    NODE_NOT_FOUND,
    SCHEDULER,
    UNSCHEDULABLE,
    NodeView,
    Scheduler,
    describe_placement,
    heartbeat_prefix,
)
from kukeon.store import SpaceExceeded, StoreError, WatchEvent
from tests.unit.api.samples import container, realm_doc

from .hostfakes import ScopedStore, cell

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MIB = 1 << 20


class Fleet(ScopedStore):
    key_prefix = "/kukeon"
    client: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.alive: set[str] = set()

    async def current_revision(self) -> int:
        return self.revision


class Clock:
    """The wall clock (``now``) and a monotonic one that follows it except for ``step``s."""

    def __init__(self) -> None:
        self.now = T0
        self.stepped = 0.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - T0).total_seconds() - self.stepped

    def step(self, seconds: float) -> None:
        """The wall clock jumps (NTP, a VM resumed); no time passes."""
        self.now += timedelta(seconds=seconds)
        self.stepped += seconds


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Fleet:
    store = Fleet()

    async def alive_nodes(client: Any, key_prefix: str) -> set[str]:
        return set(store.alive)

    monkeypatch.setattr(scheduling, "alive_nodes", alive_nodes)
    return store


async def add_node(
    fleet: Fleet, name: str, *, memory: int = 0, labels: dict[str, str] | None = None
) -> None:
    node = Node.model_validate(
        {"metadata": {"name": name, "labels": labels or {}}, "status": {"state": "Ready"}}
    )
    node.status.allocatable.memory_bytes = memory
    await fleet.create(node)
    fleet.alive.add(name)


def scheduler(fleet: Fleet, clock: Clock, **kwargs: Any) -> Scheduler:
    return Scheduler(
        registry=cast(Any, fleet),
        node_name="leader",
        node_lost_timeout=60,
        clock=clock,
        monotonic=clock.monotonic,
        **kwargs,
    )


async def get_cell(fleet: Fleet, name: str) -> Cell:
    found = await fleet.get(Kind.CELL, ("r", "s", "st", name))
    assert isinstance(found, Cell)
    return found


def with_memory(name: str, mib: int, **spec: Any) -> Cell:
    return cell(
        name,
        node=None,
        containers=[container(resources={"memoryLimitBytes": mib * MIB})],
        **spec,
    )


async def test_unplaced_cells_spread_by_count_then_memory(fleet: Fleet) -> None:
    await add_node(fleet, "a", memory=1024 * MIB)
    await add_node(fleet, "b", memory=512 * MIB)
    for name in ("c1", "c2", "c3"):
        await fleet.create(with_memory(name, 100))
    pass_ = scheduler(fleet, Clock())
    await pass_.run_pass()
    placed = [(await get_cell(fleet, n)).spec.node_name for n in ("c1", "c2", "c3")]
    assert placed == ["a", "b", "a"]
    first = await get_cell(fleet, "c1")
    assert first.metadata.annotations[SCHEDULED_BY_ANNOTATION] == SCHEDULER
    # The node's finalizer comes with the binding: the node starts the cell without
    # writing it first.
    assert first.metadata.finalizers == [scheduling.CELL_FINALIZER]
    assert pass_.stats.assigned == 3
    assert "a=2 cells" in describe_placement([NodeView("a", True, cells=2)])


async def test_a_cell_that_fits_nowhere_says_why_per_node_once(fleet: Fleet) -> None:
    await add_node(fleet, "small", memory=64 * MIB)
    await add_node(fleet, "gpu", memory=4096 * MIB, labels={"gpu": "yes"})
    await fleet.create(with_memory("big", 128, nodeSelector={"disk": "ssd"}))
    pass_ = scheduler(fleet, Clock())
    await pass_.run_pass()
    big = await get_cell(fleet, "big")
    assert big.spec.node_name is None
    assert big.status.state == CellState.PENDING
    assert big.status.reason == UNSCHEDULABLE
    assert big.status.node_name is None  # not the leader's: no node runs it
    assert big.status.message is not None
    assert "gpu: labels do not match nodeSelector disk=ssd" in big.status.message
    assert "0/2 nodes are available" in big.status.message
    writes = fleet.status_writes
    await pass_.run_pass()
    assert fleet.status_writes == writes, "the same reason is not written again"


async def test_a_lost_node_goes_not_ready_and_its_cells_move_after_the_timeout(
    fleet: Fleet,
) -> None:
    await add_node(fleet, "a")
    await add_node(fleet, "b")
    await fleet.create(cell("pinned", node="a"))
    await fleet.create(cell("placed", node=None))
    clock = Clock()
    pass_ = scheduler(fleet, clock)
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "b"  # fewer cells than a
    await add_node(fleet, "c")
    fleet.alive -= {"a", "b"}
    clock.now = T0 + timedelta(seconds=10)
    await pass_.run_pass()
    node = await fleet.get(Kind.NODE, ("a",))
    assert isinstance(node, Node)
    assert node.status.state == NodeState.NOT_READY
    assert node.status.reason == "HeartbeatLost"
    for name in ("pinned", "placed"):
        lost = await get_cell(fleet, name)
        assert lost.status.state == CellState.UNKNOWN
        assert lost.status.reason == NODE_LOST
    clock.now = T0 + timedelta(seconds=120)
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "c"
    assert (await get_cell(fleet, "pinned")).spec.node_name == "a", "a pinned cell waits"
    assert pass_.stats.rescheduled == 1


async def test_a_forward_clock_step_moves_no_cell_early(fleet: Fleet) -> None:
    """The leader's wall clock jumps an hour while a node is NotReady: its cells are moved
    once the node has been lost for the timeout as time passes, not at the jump, and no
    release of what the node holds comes early either."""
    await add_node(fleet, "a")
    await add_node(fleet, "b")
    await fleet.create(cell("placed", node=None))
    clock = Clock()
    pass_ = scheduler(fleet, clock, release_interval=0.0)
    released: list[set[str]] = []

    async def release(*, registered: set[str], gone: set[str], alive: Any = ()) -> int:
        released.append(gone)
        return 0

    pass_.release_gone_nodes = release  # type: ignore[method-assign]
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "a"
    fleet.alive.discard("a")
    clock.now = T0 + timedelta(seconds=10)
    await pass_.run_pass()  # a goes NotReady now
    assert (await get_cell(fleet, "placed")).status.state == CellState.UNKNOWN
    clock.step(3600)
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "a", "moved at the jump"
    clock.now += timedelta(seconds=59)
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "a"
    assert released[-1] == set()
    clock.now += timedelta(seconds=1)
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "b"
    assert released[-1] == {"a"}
    assert pass_.stats.rescheduled == 1


async def test_a_new_term_counts_a_lost_node_afresh(fleet: Fleet) -> None:
    """A leader that takes the lease again knows nothing of how long a node was lost:
    it waits the whole timeout from its own first sight (later, never earlier)."""
    await add_node(fleet, "a")
    await add_node(fleet, "b")
    await fleet.create(cell("placed", node=None))
    clock = Clock()
    pass_ = scheduler(fleet, clock)
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "a"
    fleet.alive.discard("a")
    await pass_.run_pass()
    clock.now += timedelta(seconds=50)
    await pass_.run_pass()
    pass_.lost.restart()  # what lead() does when the term begins
    clock.now += timedelta(seconds=50)
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "a"
    clock.now += timedelta(seconds=60)
    await pass_.run_pass()
    assert (await get_cell(fleet, "placed")).spec.node_name == "b"


async def test_a_leader_back_before_the_heartbeats_waits_for_them(fleet: Fleet) -> None:
    """etcd refused writes for minutes, so every lease is gone; the leader takes its lease
    (a new term) about a second before the heartbeat loops, backing off, take theirs. Its
    first pass marked its own node NotReady and the node's cells Unknown/NodeLost, Ready
    again right after (found on a kukeond whose etcd was full). Nodes it has not heard
    since its term began are judged after the grace; one that stays silent is then lost."""
    await add_node(fleet, "leader")
    await add_node(fleet, "gone")
    for name, host in (("own", "leader"), ("other", "gone")):
        running = cell(name, node=host)
        running.status.state = CellState.READY
        await fleet.create(running)
    fleet.alive.clear()  # every lease expired while etcd was full
    clock = Clock()
    pass_ = scheduler(fleet, clock, heartbeat_grace=40.0)
    pass_.listen_afresh()  # what lead() does when the term begins
    await pass_.run_pass()
    clock.now += timedelta(seconds=1)
    fleet.alive.add("leader")  # its own heartbeat takes its lease a second later
    await pass_.run_pass()
    for name in ("leader", "gone"):
        node = await fleet.get(Kind.NODE, (name,))
        assert isinstance(node, Node)
        assert node.status.state == NodeState.READY, f"{name} judged before the grace"
    for name in ("own", "other"):
        assert (await get_cell(fleet, name)).status.state == CellState.READY
    clock.now += timedelta(seconds=38)
    await pass_.run_pass()
    assert (await get_cell(fleet, "other")).status.state == CellState.READY, "39 s of 40"
    clock.now += timedelta(seconds=1)
    await pass_.run_pass()
    gone = await fleet.get(Kind.NODE, ("gone",))
    assert isinstance(gone, Node)
    assert (gone.status.state, gone.status.reason) == (NodeState.NOT_READY, "HeartbeatLost")
    assert (await get_cell(fleet, "other")).status.reason == NODE_LOST
    assert (await get_cell(fleet, "own")).status.state == CellState.READY
    fleet.alive.discard("leader")  # heard this term, then its lease expired: lost at once
    await pass_.run_pass()
    assert (await get_cell(fleet, "own")).status.reason == NODE_LOST


async def _a_failed_pass(pass_: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    """One pass that etcd fails (its lease read refused), then etcd answers again."""
    alive = scheduling.alive_nodes

    async def refused(client: Any, key_prefix: str) -> set[str]:
        raise SpaceExceeded("database space exceeded")

    monkeypatch.setattr(scheduling, "alive_nodes", refused)
    with pytest.raises(SpaceExceeded):
        await pass_.run_pass()
    monkeypatch.setattr(scheduling, "alive_nodes", alive)


async def test_a_pass_the_store_fails_starts_the_grace_over(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader that keeps its lease while etcd fails its passes heard nothing meanwhile:
    the grace counts from its last failed pass, not from its term's start."""
    await add_node(fleet, "a")
    fleet.alive.clear()
    clock = Clock()
    pass_ = scheduler(fleet, clock, heartbeat_grace=40.0)
    await pass_.run_pass()
    clock.now += timedelta(seconds=100)
    await _a_failed_pass(pass_, monkeypatch)
    clock.now += timedelta(seconds=1)
    await pass_.run_pass()
    node = await fleet.get(Kind.NODE, ("a",))
    assert isinstance(node, Node)
    assert node.status.state == NodeState.READY
    clock.now += timedelta(seconds=39)
    await pass_.run_pass()
    node = await fleet.get(Kind.NODE, ("a",))
    assert isinstance(node, Node)
    assert node.status.state == NodeState.NOT_READY


async def test_a_failed_pass_forgets_no_node_heard(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node heard in the term whose lease then expires is marked at once, even after a
    pass failed on etcd (one member gone): forgetting it put its loss off by the whole
    grace (a kill -9 of a node during an etcd member's failover, in a final CI run)."""
    await add_node(fleet, "a")
    clock = Clock()
    pass_ = scheduler(fleet, clock, heartbeat_grace=40.0)
    await pass_.run_pass()
    clock.now += timedelta(seconds=1)
    await _a_failed_pass(pass_, monkeypatch)
    fleet.alive.discard("a")
    clock.now += timedelta(seconds=1)
    await pass_.run_pass()
    node = await fleet.get(Kind.NODE, ("a",))
    assert isinstance(node, Node)
    assert node.status.state == NodeState.NOT_READY


async def test_a_cell_written_since_the_pass_read_it_is_not_marked_unknown(
    fleet: Fleet,
) -> None:
    """The node's Ready, written between the pass's read and its NodeLost mark (a node
    back from a partition reports before its heartbeat works), is not overwritten."""
    await add_node(fleet, "a")
    await fleet.create(cell("pinned", node="a"))
    clock = Clock()
    pass_ = scheduler(fleet, clock)
    await pass_.run_pass()
    fleet.alive.discard("a")
    clock.now = T0 + timedelta(seconds=10)
    await pass_.run_pass()  # a goes NotReady
    assert (await get_cell(fleet, "pinned")).status.state == CellState.UNKNOWN
    ready = await get_cell(fleet, "pinned")
    ready.status.state, ready.status.reason = CellState.READY, None
    await fleet.update_status(ready)  # a reports again before its heartbeat works
    writes = fleet.status_writes
    fleet.conflicts_to_inject = 1  # and again between the next pass's read and its mark
    await pass_.run_pass()
    assert (await get_cell(fleet, "pinned")).status.state == CellState.READY
    assert fleet.status_writes == writes, "the mark lost its compare-and-swap: not retried"
    await pass_.run_pass()  # the next pass decides again, on what it reads then
    assert (await get_cell(fleet, "pinned")).status.state == CellState.UNKNOWN


async def test_a_cell_on_a_node_nobody_registered_says_so(fleet: Fleet) -> None:
    """A cell moved (or pinned) to a node name with no Node and no heartbeat kept what its
    last node reported (Ready 1/1, found moving a cell's nodeName on a private kukeond):
    it runs nowhere, so it is Pending/NodeNotFound, once the leader has listened for the
    grace. A node with a heartbeat but no document (registering, or its document
    undecodable) is no such case."""
    await add_node(fleet, "a")
    moved = cell("moved", node="ghost")
    moved.status.state = CellState.READY
    await fleet.create(moved)
    await fleet.create(cell("joining", node="b"))
    fleet.alive.add("b")
    clock = Clock()
    pass_ = scheduler(fleet, clock)
    await pass_.run_pass()
    assert (await get_cell(fleet, "moved")).status.state == CellState.READY, "term's first read"
    clock.now += timedelta(seconds=40)
    await pass_.run_pass(woken=False)  # the idle pass lists the cell left waiting
    found = await get_cell(fleet, "moved")
    assert (found.status.state, found.status.reason) == (CellState.PENDING, NODE_NOT_FOUND)
    assert "ghost" in (found.status.message or "")
    assert found.status.node_name is None
    assert (await get_cell(fleet, "joining")).status.reason is None
    writes = fleet.status_writes
    await pass_.run_pass()
    assert fleet.status_writes == writes, "marked once"


async def test_what_gone_nodes_hold_is_released(fleet: Fleet) -> None:
    await add_node(fleet, "a")
    realm = await fleet.create(parse_resource(realm_doc("r")))
    for node in ("a", "gone", "running-unregistered"):
        await fleet.add_finalizer(Kind.REALM, ("r",), node_finalizer(Kind.REALM, node))
    fleet.alive.add("running-unregistered")
    clock = Clock()
    pass_ = scheduler(fleet, clock, release_interval=5.0)
    await pass_.run_pass()
    assert pass_.stats.released == 0, "gone on the term's first read"
    clock.now += timedelta(seconds=40)
    await pass_.run_pass()
    realm = await fleet.get(Kind.REALM, ("r",))
    assert realm.metadata.finalizers == [
        node_finalizer(Kind.REALM, "a"),
        node_finalizer(Kind.REALM, "running-unregistered"),
    ]
    assert pass_.stats.released == 1


async def test_a_node_starting_during_a_pass_is_not_marked_not_ready(fleet: Fleet) -> None:
    """A node takes its lease, then writes Ready: a pass that reads the Nodes while that
    happens must not mark it NotReady over its fresh Ready (the leases are read after)."""
    await add_node(fleet, "a")
    fleet.alive.discard("a")  # registered, its lease not taken yet
    listing = fleet.list

    async def list_while_a_starts(kind: Kind, *args: Any, **kwargs: Any) -> Any:
        found = await listing(kind, *args, **kwargs)
        if kind is Kind.NODE:
            fleet.alive.add("a")  # its lease, then (the Node listed) its Ready
        return found

    fleet.list = list_while_a_starts  # type: ignore[method-assign]
    await scheduler(fleet, Clock()).run_pass()
    node = await fleet.get(Kind.NODE, ("a",))
    assert isinstance(node, Node)
    assert node.status.state == NodeState.READY


async def test_a_deleted_cell_waits_for_its_node_unless_that_node_is_down(fleet: Fleet) -> None:
    """Only a cell's node finalizes it; for a node whose kukeond is not running (its
    heartbeat lease gone, and not heard by the leader for the grace) the leader drops the
    finalizer, or the deletion would wait for the node's return."""
    await add_node(fleet, "a")
    await add_node(fleet, "b")
    for name, node in (("on-a", "a"), ("on-b", "b")):
        await deleted_cell(fleet, name, node)
    fleet.alive.discard("b")
    clock = Clock()
    pass_ = scheduler(fleet, clock)
    await pass_.run_pass()
    assert (Kind.CELL, ("r", "s", "st", "on-b")) in fleet.objects, "term's first read"
    clock.now += timedelta(seconds=40)
    await pass_.run_pass()
    waiting = await get_cell(fleet, "on-a")
    assert waiting.metadata.deletion_timestamp is not None  # a's kukeond tears it down
    assert (Kind.CELL, ("r", "s", "st", "on-b")) not in fleet.objects
    assert pass_.stats.released_cells == 1


async def deleted_cell(fleet: Fleet, name: str, node: str) -> None:
    """A cell on ``node`` deleted while its node's finalizer holds it."""
    await fleet.create(cell(name, node=node))
    await fleet.add_finalizer(Kind.CELL, ("r", "s", "st", name), scheduling.CELL_FINALIZER)
    await fleet.delete(Kind.CELL, ("r", "s", "st", name))


def held(fleet: Fleet, name: str) -> bool:
    return (Kind.CELL, ("r", "s", "st", name)) in fleet.objects


async def test_a_lease_missing_from_one_read_drops_no_finalizer(fleet: Fleet) -> None:
    """A node heard in the term whose lease is missing from a read (its kukeond taking a
    new one: the old one lost, the grant refused a while by a full etcd) still runs its
    cells: dropping a deleted cell's finalizer then removed the document before the node
    had stopped the containers, which ran on with nothing to stop them for. The leader
    drops it only once it has not heard the node for the grace, by idle passes too."""
    await add_node(fleet, "a")
    clock = Clock()
    pass_ = scheduler(fleet, clock, heartbeat_grace=40.0)
    await pass_.run_pass()
    await deleted_cell(fleet, "leaving", "a")
    fleet.alive.discard("a")  # being re-created
    clock.now += timedelta(seconds=1)
    await pass_.run_pass()
    assert held(fleet, "leaving"), "dropped on one read"
    clock.now += timedelta(seconds=1)
    fleet.alive.add("a")
    await pass_.run_pass()
    fleet.alive.discard("a")  # lost for good now, last heard at 2 s
    clock.now += timedelta(seconds=39)
    await pass_.run_pass(woken=False)
    assert held(fleet, "leaving"), "39 s of 40"
    clock.now += timedelta(seconds=1)
    await pass_.run_pass(woken=False)
    assert not held(fleet, "leaving")
    assert pass_.stats.released_cells == 1


async def test_a_failed_pass_starts_the_wait_for_a_gone_node_over(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a pass etcd failed (writes refused, leases re-granted once it takes
    them again) a missing lease is no evidence: the grace counts from that pass."""
    await add_node(fleet, "a")
    clock = Clock()
    pass_ = scheduler(fleet, clock, heartbeat_grace=40.0)
    await pass_.run_pass()
    await deleted_cell(fleet, "leaving", "a")
    clock.now += timedelta(seconds=100)
    await _a_failed_pass(pass_, monkeypatch)
    fleet.alive.discard("a")
    clock.now += timedelta(seconds=1)
    await pass_.run_pass()
    assert held(fleet, "leaving"), "dropped right after a failed pass"
    clock.now += timedelta(seconds=39)
    await pass_.run_pass()
    assert not held(fleet, "leaving")


async def test_the_leaders_own_node_is_never_gone_while_it_holds_its_lease(
    fleet: Fleet,
) -> None:
    """A read without the leader's own lease (etcd recovering) while this process holds it
    neither drops its deleted cells' finalizers nor releases what it holds; a process
    that has lost its own lease waits the grace as for any node."""
    await add_node(fleet, "leader")
    realm = await fleet.create(parse_resource(realm_doc("r")))
    await fleet.add_finalizer(Kind.REALM, ("r",), node_finalizer(Kind.REALM, "leader"))
    await fleet.delete(Kind.NODE, ("leader",))  # its document deleted: registered again soon
    await deleted_cell(fleet, "leaving", "leader")
    fleet.alive.clear()
    holds = True
    clock = Clock()
    pass_ = scheduler(fleet, clock, heartbeat_grace=40.0, release_interval=0.0)
    pass_.heartbeats.holds_own_lease = lambda: holds
    for _ in range(3):
        await pass_.run_pass()
        clock.now += timedelta(seconds=60)
    assert held(fleet, "leaving")
    realm = await fleet.get(Kind.REALM, ("r",))
    assert realm.metadata.finalizers == [node_finalizer(Kind.REALM, "leader")]
    holds = False
    await pass_.run_pass()
    assert not held(fleet, "leaving")
    assert (await fleet.get(Kind.REALM, ("r",))).metadata.finalizers == []


async def test_a_node_taking_a_new_lease_without_a_document_is_not_marked_not_found(
    fleet: Fleet,
) -> None:
    """A node whose Node document is being registered again (deleted, or undecodable)
    while its lease is re-created is missing from one pass entirely: its running cells are
    not marked NodeNotFound for that."""
    running = cell("running", node="b")
    running.status.state = CellState.READY
    await fleet.create(running)
    fleet.alive.add("b")
    clock = Clock()
    pass_ = scheduler(fleet, clock, heartbeat_grace=40.0)
    await pass_.run_pass()
    fleet.alive.discard("b")
    clock.now += timedelta(seconds=5)
    await pass_.run_pass()
    assert (await get_cell(fleet, "running")).status.state == CellState.READY
    fleet.alive.add("b")
    clock.now += timedelta(seconds=60)
    await pass_.run_pass()
    assert (await get_cell(fleet, "running")).status.state == CellState.READY


async def test_the_watch_wakes_for_cells_on_a_node_that_was_down(
    fleet: Fleet,
) -> None:
    await add_node(fleet, "a")
    pass_ = scheduler(fleet, Clock())
    deleting = {"metadata": {"deletionTimestamp": T0.isoformat()}}

    def event(name: str, node: str | None, **update: Any) -> WatchEvent:
        found = cell(name, node=node)
        document = found.model_dump(by_alias=True, mode="json")
        document["metadata"].update(update.get("metadata", {}))
        document["status"].update(update.get("status", {}))
        return WatchEvent("MODIFIED", parse_resource(document), 1)

    assert pass_._wakes_for(event("unplaced", None))
    assert pass_._wakes_for(event("gone", "b", **deleting)), "before any pass: wake"
    await pass_.run_pass()
    assert not pass_._wakes_for(event("running", "a"))
    assert not pass_._wakes_for(event("leaving", "a", **deleting)), "its node tears it down"
    assert pass_._wakes_for(event("stuck", "b", **deleting)), "b's lease is gone"
    assert pass_._wakes_for(event("moved", "ghost")), "no such node: to be marked"
    marked = {"status": {"state": "Pending", "reason": NODE_NOT_FOUND}}
    assert not pass_._wakes_for(event("moved", "ghost", **marked)), "marked already"


async def test_the_leader_loop_wakes_for_unplaced_cells(fleet: Fleet) -> None:
    await add_node(fleet, "a")
    pass_ = scheduler(fleet, Clock(), interval=30.0)
    lead = asyncio.create_task(pass_.lead())
    await asyncio.sleep(0.02)
    assert pass_.stats.passes == 1
    await fleet.create(cell("new", node=None))
    await asyncio.sleep(0.02)
    assert pass_.stats.passes == 2
    assert (await get_cell(fleet, "new")).spec.node_name == "a"
    fleet.break_watches(StoreError("watch cut"))
    await asyncio.sleep(0.02)
    lead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lead


def test_heartbeats_live_under_the_key_prefix() -> None:
    assert heartbeat_prefix("/kukeon/") == "/kukeon/leases/fleet/"


async def test_an_idle_pass_lists_no_cell_until_one_needs_deciding(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_node(fleet, "a", memory=1024 * MIB)
    await fleet.create(with_memory("c1", 100))
    listed: list[Kind] = []
    original = fleet.list

    async def counting(kind: Kind, *args: Any, **kwargs: Any) -> Any:
        listed.append(kind)
        return await original(kind, *args, **kwargs)

    monkeypatch.setattr(fleet, "list", counting)
    clock = Clock()
    pass_ = scheduler(fleet, clock)
    await pass_.run_pass(woken=False)  # the first pass decides whatever it finds
    assert (await get_cell(fleet, "c1")).spec.node_name == "a"
    listed.clear()
    await pass_.run_pass(woken=False)  # c1 had no node in the last pass: look again
    assert Kind.CELL in listed
    listed.clear()
    await pass_.run_pass(woken=False)  # every cell placed, every node Ready: nothing to list
    assert Kind.CELL not in listed
    # A node that stops renewing its lease makes its cells a question again.
    fleet.alive.discard("a")
    clock.now += timedelta(seconds=120)
    listed.clear()
    await pass_.run_pass(woken=False)
    assert Kind.CELL in listed


async def test_a_woken_pass_lists_the_cells_while_it_reads_the_nodes(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cell list is not a round trip after the nodes' and the leases': here the nodes
    can be read only once the cells are being listed (one after the other, never)."""
    await add_node(fleet, "a", memory=1024 * MIB)
    await fleet.create(with_memory("c1", 100))
    cells_asked = asyncio.Event()
    original = fleet.list

    async def gated(kind: Kind, *args: Any, **kwargs: Any) -> Any:
        if kind == Kind.CELL:
            cells_asked.set()
        else:
            await cells_asked.wait()
        return await original(kind, *args, **kwargs)

    monkeypatch.setattr(fleet, "list", gated)
    async with asyncio.timeout(5):
        await scheduler(fleet, Clock()).run_pass(woken=True)
    assert (await get_cell(fleet, "c1")).spec.node_name == "a"


async def test_cells_are_placed_oldest_first_so_a_sets_oldest_cells_spread(fleet: Fleet) -> None:
    """A set scaled down keeps its oldest cells: placed in the order they were made, the
    oldest of any count land one per node (listed by name, c5, made third, would share b
    with c2)."""
    for name in ("a", "b", "c"):
        await add_node(fleet, name)
    made = ("c1", "c2", "c5", "c3", "c4", "c6")
    for name in made:
        one = cell(name, node=None)
        labels = {CELLSET_LABEL: "web"}
        await fleet.create(
            one.model_copy(update={"metadata": one.metadata.model_copy(update={"labels": labels})})
        )
    await scheduler(fleet, Clock()).run_pass()
    nodes = [(await get_cell(fleet, name)).spec.node_name for name in made]
    assert nodes == ["a", "b", "c", "a", "b", "c"]
