"""Never two copies of a cell (issue 21), the decisions without etcd or containerd:
which cells a node runs, what a cell's new version means for the node's copy, when the node
fences itself, what `kukectl drain` moves, and the order of a drain's hand-back (the copy
stops before `nodeName` is cleared)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kukeon.api import SCHEDULED_BY_ANNOTATION, SCHEDULED_BY_SCHEDULER, Cell, Node, parse_resource
from kukeon.api.placement import EVICT_ANNOTATION
from kukeon.cli.nodes import plan_drain
from kukeon.controllers.departures import Departures, departure, should_run
from kukeon.controllers.scheduler import NODE_LOST
from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.fencing import FenceStep, fence_step
from kukeon.store import Conflict, NotFound

MIB = 1024 * 1024
Key = tuple[str, ...]


def cell(
    name: str,
    *,
    node: str | None = None,
    placed: bool = True,
    evict: str | None = None,
    memory: int | None = None,
    **spec: Any,
) -> Cell:
    annotations = {SCHEDULED_BY_ANNOTATION: SCHEDULED_BY_SCHEDULER} if placed else {}
    if evict:
        annotations[EVICT_ANNOTATION] = evict
    container: dict[str, Any] = {"id": "main", "image": "busybox"}
    if memory is not None:
        container["resources"] = {"memoryLimitBytes": memory}
    parsed = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"containers": [container], "nodeName": node, **spec},
        }
    )
    assert isinstance(parsed, Cell)
    return parsed


def node(name: str, *, ready: bool = True, memory: int = 1024 * MIB, **labels: str) -> Node:
    parsed = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {
                "state": "Ready" if ready else "NotReady",
                "allocatable": {"memoryBytes": memory},
            },
        }
    )
    assert isinstance(parsed, Node)
    return parsed


# --- which cells a node runs ------------------------------------------------------------------


def test_a_node_runs_its_assigned_cells_unless_evicted_or_fenced_away() -> None:
    assert should_run(cell("a", node="n1"), node="n1", fenced=False)
    assert not should_run(cell("a", node="n2"), node="n1", fenced=False)
    assert not should_run(cell("a"), node="n1", fenced=False)
    assert not should_run(cell("a", node="n1", evict="n1"), node="n1", fenced=False)
    # An eviction naming another node (left over from an older drain) changes nothing here.
    assert should_run(cell("a", node="n1", evict="n2"), node="n1", fenced=False)
    # Fenced: only pinned cells go on.
    assert not should_run(cell("a", node="n1"), node="n1", fenced=True)
    assert should_run(cell("a", node="n1", placed=False), node="n1", fenced=True)


def test_what_a_new_version_means_for_the_copy_here() -> None:
    moved = departure(node="n1", was_here=True, cell=cell("a", node="n2"))
    assert (moved.stop, moved.hand_back) == (True, False)
    unplaced = departure(node="n1", was_here=True, cell=cell("a"))
    assert (unplaced.stop, unplaced.hand_back) == (True, False)
    evicted = departure(node="n1", was_here=True, cell=cell("a", node="n1", evict="n1"))
    assert (evicted.stop, evicted.hand_back) == (True, True)
    staying = departure(node="n1", was_here=True, cell=cell("a", node="n1"))
    assert not staying.stop
    elsewhere = departure(node="n1", was_here=False, cell=cell("a", node="n2"))
    assert not elsewhere.stop, "never here: nothing to stop"
    assert not departure(node="n1", was_here=True, cell=None).stop, "deleted: the finalizer"


# --- fencing ----------------------------------------------------------------------------------


def test_fencing_starts_after_fence_after_and_ends_with_a_renewal() -> None:
    assert fence_step(silent_for=3.9, fence_after=4.0, fenced=False) is None
    assert fence_step(silent_for=4.0, fence_after=4.0, fenced=False) is FenceStep.FENCE
    assert fence_step(silent_for=9.0, fence_after=4.0, fenced=True) is None
    assert fence_step(silent_for=0.5, fence_after=4.0, fenced=True) is FenceStep.UNFENCE
    assert fence_step(silent_for=0.5, fence_after=4.0, fenced=False) is None


FLEET_ETCD = {"etcd_endpoints": ["https://etcd.example:2379"], "etcd_ca_file": "/ca.crt"}


def test_fencing_happens_before_replacement() -> None:
    assert DaemonConfig(**FLEET_ETCD).fence_after == 40.0  # the lease TTL: at its expiry
    assert DaemonConfig(**FLEET_ETCD, fence_after_seconds=20).fence_after == 20
    with pytest.raises(ValueError, match="fenceAfterSeconds"):
        DaemonConfig(**FLEET_ETCD, fence_after_seconds=340)  # nodeLeaseTtl + nodeLostTimeout
    # ... less the peers' answers waited for before fencing (helper-231's FencingWatch)
    with pytest.raises(ValueError, match=r"fenceAfterSeconds \(337.0\) must be below .* \(336.0\)"):
        DaemonConfig(**FLEET_ETCD, fence_after_seconds=337)
    assert DaemonConfig(**FLEET_ETCD, fence_after_seconds=335).fence_after == 335


def test_a_node_on_the_embedded_etcd_never_fences() -> None:
    """No other node can take its cells: fencing would only stop them while etcd is away."""
    assert DaemonConfig(**FLEET_ETCD).fences
    assert not DaemonConfig().fences
    with pytest.raises(ValueError, match=r"fenceAfterSeconds .* needs etcdEndpoints"):
        DaemonConfig(fence_after_seconds=20)


# --- kukectl drain ----------------------------------------------------------------------------


def test_drain_moves_what_another_node_can_take_and_leaves_the_rest_running() -> None:
    nodes = [node("n1", gpu="yes"), node("n2", memory=100 * MIB), node("n3", ready=False)]
    cells = [
        cell("web", node="n1"),
        cell("pinned", node="n1", placed=False),
        cell("gpu", node="n1", nodeSelector={"gpu": "yes"}),
        cell("big1", node="n1", memory=60 * MIB),
        cell("big2", node="n1", memory=60 * MIB),  # n2 has room for one of the two
        cell("other", node="n2"),
    ]
    plan = plan_drain("n1", nodes, cells, realms=[])
    assert [c.metadata.name for c in plan.evict] == ["big1", "web"]
    assert [name.rsplit("/", 1)[1] for name in plan.pinned] == ["pinned"]
    stuck = {name.rsplit("/", 1)[1]: why for name, why in plan.stuck}
    assert set(stuck) == {"big2", "gpu"}
    assert "n2: labels do not match nodeSelector gpu=yes" in stuck["gpu"]
    assert "n3: not Ready" in stuck["gpu"]
    assert "not enough memory" in stuck["big2"]


def test_drain_counts_a_capped_realms_memory_as_the_scheduler_does() -> None:
    """n2's allocatable memory is all declared by one cell of a realm held to 64 MiB (its
    cgroup's memory.max on every node): it reserves 64 MiB there, so n1's 64 MiB cell of
    another realm fits on n2 for the scheduler, and drain moves it. Before, drain counted
    the limits whole (0 free on n2) and left the cell running on n1."""
    from kukeon.api import Realm
    from kukeon.api.placement import choose_node, count_cells, node_view, realm_memory_caps

    capped = Realm.model_validate(
        {"metadata": {"name": "capped"}, "spec": {"limits": {"memoryBytes": 64 * MIB}}}
    )
    nodes = [node("n1"), node("n2")]
    hog = cell("hog", node="n2", placed=False, memory=1024 * MIB, realmId="capped")
    web = cell("web", node="n1", memory=64 * MIB)
    plan = plan_drain("n1", nodes, [hog, web], realms=[capped])
    assert [c.metadata.name for c in plan.evict] == ["web"]
    assert plan.stuck == []
    # The scheduler's view of n2, with the same realms: it places the cell there.
    views = {"n2": node_view(nodes[1], realm_memory_caps([capped]))}
    count_cells(views, [hog])
    assert choose_node(cell("web", memory=64 * MIB), views.values()).node == "n2"
    # A realm without a cap reserves its limits whole, for drain as for the scheduler.
    uncapped = plan_drain("n1", nodes, [hog, web], realms=[])
    assert uncapped.evict == []
    assert "n2: not enough memory: needs 67108864 bytes, 0 free" in uncapped.stuck[0][1]


def test_draining_the_only_node_says_there_is_no_other() -> None:
    plan = plan_drain("n1", [node("n1")], [cell("web", node="n1")], realms=[])
    assert plan.stuck == [("default/default/default/web", "no other node is registered")]


# --- the hand-back ----------------------------------------------------------------------------


class FakeRegistry:
    def __init__(self, cells: list[Cell]) -> None:
        self.cells = {("default", "default", "default", c.metadata.name): c for c in cells}
        self.updates: list[Cell] = []
        self.conflicts = 0

    async def get(self, kind: object, key: Key) -> Cell:
        if key not in self.cells:
            raise NotFound(str(key))
        return self.cells[key]

    async def update(self, cell: Cell, *, placement: bool = False) -> Cell:
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict("changed")
        self.updates.append(cell)
        key = ("default", "default", "default", cell.metadata.name)
        self.cells[key] = cell
        return cell


class Recorded(Departures):
    """Departures whose copies and host sides are only written down."""

    def __init__(self, registry: FakeRegistry, log: list[str]) -> None:
        host = SimpleNamespace(settings=SimpleNamespace(node_name="n1"))
        super().__init__(
            host=cast(Any, host), registry=cast(Any, registry), cells=cast(Any, None), retry=0
        )
        self.log = log

    async def stop_copies(self, keys: Collection[Key]) -> int:
        self.log.extend(f"stop {k[-1]}" for k in sorted(keys))
        return len(keys)

    async def _remove_host_side(self, key: Key) -> None:
        self.log.append(f"host side {key[-1]}")


async def settle(departures: Departures) -> None:
    for _ in range(50):
        if not departures._running:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("departures still running")


async def test_a_drained_cell_is_stopped_then_handed_back() -> None:
    log: list[str] = []
    registry = FakeRegistry([cell("web", node="n1", evict="n1")])
    registry.conflicts = 1  # a status write landed meanwhile: decided again on the new one
    departures = Recorded(registry, log)
    key = ("default", "default", "default", "web")
    departures.observe(key, cell("web", node="n1"))
    assert departures.assigned == {key: False}
    departures.observe(key, registry.cells[key])
    await settle(departures)
    assert log == ["stop web", "stop web", "host side web"]
    (released,) = registry.updates
    assert released.spec.node_name is None
    assert EVICT_ANNOTATION not in released.metadata.annotations
    assert SCHEDULED_BY_ANNOTATION not in released.metadata.annotations
    assert departures.stats.handed_back == 1


async def test_a_cell_moved_away_is_stopped_and_not_written() -> None:
    log: list[str] = []
    registry = FakeRegistry([cell("web", node="n2")])
    departures = Recorded(registry, log)
    key = ("default", "default", "default", "web")
    departures.observe(key, cell("web", node="n1"))
    departures.observe(key, cell("web", node="n2"))
    await settle(departures)
    assert log == ["stop web", "host side web"]
    assert registry.updates == []
    assert departures.assigned == {}


async def test_fencing_stops_the_unpinned_cells_and_unfencing_brings_back_what_etcd_says() -> None:
    log: list[str] = []
    triggered: list[Key] = []
    registry = FakeRegistry([cell("b", node="n2")])
    departures = Recorded(registry, log)
    departures.trigger = lambda kind, key: triggered.append(key)
    keys = {name: ("default", "default", "default", name) for name in ("a", "b", "pinned")}
    departures.observe(keys["a"], cell("a", node="n1"))
    departures.observe(keys["b"], cell("b", node="n1"))
    departures.observe(keys["pinned"], cell("pinned", node="n1", placed=False))
    # Fencing makes no new version of a cell: it tells which cells this node runs no more
    # (their image pulls leave), before their copies stop ...
    told: list[tuple[Key, Cell | None, int]] = []  # and how many stops were logged then
    departures.runs_here_changed = lambda key, version: told.append((key, version, len(log)))
    await departures.fence()
    assert sorted(told) == [(keys["a"], None, 0), (keys["b"], None, 0)]
    assert log == ["stop a", "stop b"]
    assert not departures.runs_here(cell("a", node="n1"))
    assert departures.runs_here(cell("pinned", node="n1", placed=False))

    # Meanwhile the scheduler moved b: only a comes back.
    async def listing(kind: object) -> SimpleNamespace:
        return SimpleNamespace(
            items=[cell("a", node="n1"), cell("b", node="n2"), cell("pinned", node="n1")]
        )

    cast(Any, registry).list = listing
    said: list[tuple[str, str]] = []
    departures.say_fenced = lambda cell, message: said.append((cell.metadata.name, message))
    told.clear()
    await departures.unfence()
    # ... and unfencing of the cells it runs again, with the versions read (b moved away).
    assert sorted(key[-1] for key, _, _ in told) == ["a", "pinned"]
    assert all(version is not None and version.spec.node_name == "n1" for _, version, _ in told)
    assert not departures.fenced
    assert sorted(triggered) == [keys["a"], keys["pinned"]]
    await settle(departures)
    assert log == ["stop a", "stop b", "stop b", "host side b"]
    # Only a, stopped by the fence and back here, is told (etcd took nothing at the fence).
    [(name, message)] = said
    assert name == "a"
    assert "node n1 fenced itself at " in message
    assert "stopped" in message
    assert "started again" in message


def reported(base: Cell, *, by: str, state: str, reason: str | None = None) -> Cell:
    """``base`` with a status ``by`` wrote (``status.nodeName`` names the writer)."""
    status = base.status.model_copy(update={"node_name": by, "state": state, "reason": reason})
    return base.model_copy(update={"status": status})


async def answered(departures: Departures) -> None:
    for _ in range(50):
        if not departures._answering and not departures._running:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("departures still answering")


async def test_the_schedulers_node_lost_mark_on_a_cell_run_here_is_answered() -> None:
    """The partition phase's 'n3 Ready again' timeout: the scheduler leader marks n1's pinned
    cell Unknown/NodeLost in a pass that read n1 NotReady, after n1 came back and reported
    the cell Ready. That version changes no spec, so the cell controller's queue keeps it
    without a reconcile: n1 must requeue it, or the cell stays Unknown for good."""
    pinned = cell("pinned", node="n1", placed=False)
    lost = reported(pinned, by="n2", state="Unknown", reason=NODE_LOST)
    registry = FakeRegistry([lost])
    requeued: list[Cell] = []
    departures = Recorded(registry, [])
    departures.requeue = requeued.append
    key = ("default", "default", "default", "pinned")
    departures.observe(key, reported(pinned, by="n1", state="Ready"))
    await answered(departures)
    assert requeued == []
    departures.observe(key, lost)
    await answered(departures)
    assert requeued == [lost]
    # The reconcile's answer, whatever it is, replaces the reason: no loop.
    for answer in ("ParentNotReady", None):
        registry.cells[key] = reported(pinned, by="n1", state="Unknown", reason=answer)
        departures.observe(key, registry.cells[key])
    await answered(departures)
    assert requeued == [lost]


async def test_a_node_lost_mark_is_answered_with_the_version_read_now() -> None:
    """After a partition the watch delivers old versions: a placed cell's NodeLost mark
    arrives before its move to another node. The reconcile must not run with it (the copy
    would start here again): the cell is read first."""
    placed = cell("web", node="n1")
    moved = reported(cell("web", node="n2"), by="n2", state="Ready")
    requeued: list[Cell] = []
    departures = Recorded(FakeRegistry([moved]), [])
    departures.requeue = requeued.append
    key = ("default", "default", "default", "web")
    departures.observe(key, reported(placed, by="n1", state="Ready"))
    departures.observe(key, reported(placed, by="n2", state="Unknown", reason=NODE_LOST))
    await answered(departures)
    assert requeued == []


async def test_a_node_lost_mark_on_a_cell_not_run_here_is_left() -> None:
    """Moved away, handed back by a drain, placed by the scheduler while the node is fenced,
    or just arrived (the move runs its reconcile): nothing to answer."""
    mark = reported(cell("any"), by="n2", state="Unknown", reason=NODE_LOST).status
    versions = {
        "moved": cell("moved", node="n2"),
        "drained": cell("drained", node="n1", evict="n1"),
        "placed": cell("placed", node="n1"),
    }
    registry = FakeRegistry([c.model_copy(update={"status": mark}) for c in versions.values()])
    requeued: list[Cell] = []
    departures = Recorded(registry, [])
    departures.requeue = requeued.append
    for name in versions:
        departures.observe(("default", "default", "default", name), cell(name, node="n1"))
    departures.fenced = True
    for name, version in versions.items():
        marked = version.model_copy(update={"status": mark})
        departures.observe(("default", "default", "default", name), marked)
    departures.fenced = False
    arrived = cell("arrived", node="n1").model_copy(update={"status": mark})
    departures.observe(("default", "default", "default", "arrived"), arrived)
    await answered(departures)
    assert requeued == []
