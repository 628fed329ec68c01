"""The pure parts of per-node materialisation: finalizer names, status entries, aggregation,
the CAS write of one node's entry, and which cell events queue a cell's parents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kukeon.api import (
    Kind,
    NodeLayerState,
    NodeLayerStatus,
    ObjectMeta,
    Realm,
    Space,
    SpaceNodeStatus,
    Stack,
    key_of,
)
from kukeon.controllers.layers import (
    aggregate,
    finalizer_node,
    legacy_finalizer,
    merge_entry,
    node_finalizer,
    nodes_named,
    write_layer_status,
)
from kukeon.controllers.membership import CellMembership
from kukeon.framework.statusbound import COPIED_CHARS, MESSAGE_CHARS
from kukeon.store import Conflict, NotFound

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ready(path: str, **extra: Any) -> NodeLayerStatus:
    return NodeLayerStatus(state=NodeLayerState.READY, cgroup_path=path, **extra)


def test_finalizer_names_round_trip() -> None:
    assert legacy_finalizer(Kind.SPACE) == "kukeon.io/space-controller"
    name = node_finalizer(Kind.SPACE, "host-a.example")
    assert name == "kukeon.io/space-controller.host-a.example"
    assert finalizer_node(Kind.SPACE, name) == "host-a.example"
    assert finalizer_node(Kind.REALM, name) is None
    assert finalizer_node(Kind.SPACE, legacy_finalizer(Kind.SPACE)) is None
    assert finalizer_node(Kind.SPACE, "kukeon.io/children") is None


def test_nobody_hosts_it_is_ready_without_host_fields() -> None:
    fields = aggregate(Kind.SPACE, {}, writer="n1", deleting=False)
    assert str(fields["state"]) == "Ready"
    assert fields["cgroup_path"] is None
    assert fields["cgroup_ready"] is False
    assert fields["network"].bridge_name is None
    assert fields["reason"] is None


def test_the_writers_ready_entry_fills_the_top_level() -> None:
    nodes = {
        "a": SpaceNodeStatus(state=NodeLayerState.READY, cgroup_path="/a", subnet="10.0.0.0/24"),
        "b": SpaceNodeStatus(state=NodeLayerState.READY, cgroup_path="/b", subnet="10.0.1.0/24"),
        "c": SpaceNodeStatus(state=NodeLayerState.CREATING),
    }
    mine = aggregate(Kind.SPACE, nodes, writer="b", deleting=False)
    assert mine["cgroup_path"] == "/b"
    assert mine["network"].subnet == "10.0.1.0/24"
    # A writer without a Ready entry (still creating, or not hosting it): the first Ready one.
    other = aggregate(Kind.SPACE, nodes, writer="c", deleting=False)
    assert other["cgroup_path"] == "/a"
    assert list(other["nodes"]) == ["a", "b", "c"]


def test_failed_only_when_every_hosting_node_failed() -> None:
    failed = NodeLayerStatus(
        state=NodeLayerState.FAILED, reason="PluginMissing", message="no bridge"
    )
    one = aggregate(Kind.STACK, {"a": failed, "b": ready("/b")}, writer="b", deleting=False)
    assert str(one["state"]) == "Ready"
    assert one["reason"] == "PluginMissing"
    assert one["message"] == "node a: no bridge"
    both = aggregate(Kind.STACK, {"a": failed}, writer="a", deleting=False)
    assert str(both["state"]) == "Failed"


def test_a_failed_nodes_message_is_quoted_cut_and_the_others_named() -> None:
    # The whole message was copied: with a status write's 1 MiB message in an entry, the
    # Space's status doubled past the document limit and was never written again.
    entry = NodeLayerStatus(state=NodeLayerState.FAILED, reason="Boom", message="x" * 10**6)
    nodes = {f"n{i}": entry for i in range(8)}
    fields = aggregate(Kind.STACK, nodes, writer="n0", deleting=False)
    assert len(fields["message"]) < COPIED_CHARS + 100
    assert fields["message"].startswith("node n0: xxx")
    assert "more characters cut)" in fields["message"]
    assert fields["message"].endswith("(also failed on n1, n2, n3, n4, n5 and 2 more)")


async def test_a_status_with_hostile_entries_is_written_bounded_once() -> None:
    space = Space(metadata=ObjectMeta(name="s", generation=1))
    big = SpaceNodeStatus(state=NodeLayerState.FAILED, reason="Boom", message="y" * 200_000)
    space.status.nodes.update({f"n{i}": big for i in range(5)})
    store = FakeStore(space)
    mine = SpaceNodeStatus(state=NodeLayerState.READY, cgroup_path="/me")
    written = await write_layer_status(store, store.obj, node="me", entry=mine)
    assert store.writes == 1
    assert len(written.model_dump_json().encode()) < 100_000
    assert all(len(e.message or "") <= MESSAGE_CHARS for e in written.status.nodes.values())
    again = await write_layer_status(store, written, node="me", entry=mine)
    assert store.writes == 1  # bounded once: the same status, nothing written again
    assert again is written


def test_deleting_realms_and_spaces_say_so_stacks_keep_their_state() -> None:
    assert str(aggregate(Kind.REALM, {}, writer="a", deleting=True)["state"]) == "Deleting"
    assert str(aggregate(Kind.SPACE, {}, writer="a", deleting=True)["state"]) == "Deleting"
    assert "state" not in aggregate(Kind.STACK, {}, writer="a", deleting=True)
    realm = aggregate(Kind.REALM, {"a": ready("/r")}, writer="a", deleting=False)
    assert realm["containerd_namespace_ready"] is True


def test_an_unchanged_entry_keeps_its_times() -> None:
    first = merge_entry(None, ready("/x"), at=T0)
    assert first.ready_at == T0
    assert first.updated_at == T0
    later = T0 + timedelta(minutes=1)
    assert merge_entry(first, ready("/x"), at=later) is first
    moved = merge_entry(first, ready("/x", subtree_controllers=["cpu"]), at=later)
    assert moved.ready_at == T0
    assert moved.updated_at == later
    creating = merge_entry(moved, NodeLayerStatus(state=NodeLayerState.CREATING), at=later)
    assert creating.ready_at is None


class FakeStore:
    """Status writes by CAS on an integer resourceVersion; ``racing`` lands first once."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj.model_copy(
            update={"metadata": obj.metadata.model_copy(update={"resource_version": "1"})}
        )
        self.racing: dict[str, NodeLayerStatus] = {}
        self.writes = 0

    def _bump(self, obj: Any) -> Any:
        rv = str(int(self.obj.metadata.resource_version) + 1)
        return obj.model_copy(
            update={"metadata": obj.metadata.model_copy(update={"resource_version": rv})}
        )

    async def get(self, kind: Kind, key: tuple[str, ...]) -> Any:
        if self.obj is None:
            raise NotFound("gone")
        return self.obj

    async def update_status(self, obj: Any) -> Any:
        if self.racing:
            nodes = {**self.obj.status.nodes, **self.racing}
            self.racing = {}
            status = self.obj.status.model_copy(update={"nodes": nodes})
            self.obj = self._bump(self.obj.model_copy(update={"status": status}))
        if obj.metadata.resource_version != self.obj.metadata.resource_version:
            raise Conflict("stale")
        self.writes += 1
        self.obj = self._bump(obj)
        return self.obj


async def test_a_node_writes_its_own_entry_and_keeps_the_others() -> None:
    stack = Stack(metadata=ObjectMeta(name="st", generation=3))
    store = FakeStore(stack)
    store.racing = {"other": ready("/other")}
    written = await write_layer_status(store, store.obj, node="me", entry=ready("/me"))
    assert set(written.status.nodes) == {"me", "other"}
    assert written.status.cgroup_path == "/me"
    assert written.status.node_name == "me"
    assert written.status.observed_generation == 3
    assert str(written.status.state) == "Ready"
    # Same entry again: nothing is written.
    writes = store.writes
    again = await write_layer_status(store, written, node="me", entry=ready("/me"))
    assert store.writes == writes
    assert again is written
    # Dropping this node's entry leaves the other one, which now fills the top level.
    dropped = await write_layer_status(store, written, node="me", drop=True)
    assert set(dropped.status.nodes) == {"other"}
    assert dropped.status.cgroup_path == "/other"


def test_nodes_named_reads_finalizers_and_entries() -> None:
    realm = Realm(
        metadata=ObjectMeta(
            name="r",
            finalizers=["kukeon.io/children", node_finalizer(Kind.REALM, "a")],
        )
    )
    realm.status.nodes["b"] = ready("/b")
    assert nodes_named(realm) == {"a", "b"}
    assert nodes_named(Space(metadata=ObjectMeta(name="s"))) == set()


def test_only_a_change_of_presence_on_this_node_queues_the_parents() -> None:
    queued: list[tuple[Kind, tuple[str, ...]]] = []

    def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
        queued.append((kind, key))
        return True

    membership = CellMembership(node="me", trigger=trigger)
    key = ("r", "s", "st", "c")
    parents = [(Kind.STACK, key[:3]), (Kind.SPACE, key[:2]), (Kind.REALM, key[:1])]
    membership.observe(key, None, deleted=False)  # not placed yet
    membership.observe(key, "other", deleted=False)
    assert queued == []
    membership.observe(key, "me", deleted=False)
    assert queued == parents
    membership.observe(key, "me", deleted=False)  # a status write: nothing
    assert queued == parents
    membership.observe(key, "other", deleted=False)  # moved away
    assert queued == parents * 2
    membership.observe(key, "me", deleted=False)
    assert membership.keys_below(("r",)) == [key]
    assert membership.keys_below(("r", "s", "st")) == [key]
    assert membership.keys_below(("r", "other")) == []
    membership.observe(key, "me", deleted=True)
    assert queued == parents * 4
    assert membership.keys_below(("r",)) == []


def recording_membership() -> tuple[CellMembership, list[tuple[Kind, tuple[str, ...]]]]:
    queued: list[tuple[Kind, tuple[str, ...]]] = []

    def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
        queued.append((kind, key))
        return True

    return CellMembership(node="me", trigger=trigger), queued


def test_membership_queues_a_level_only_for_its_first_and_last_cell_here() -> None:
    # A level does one thing with its cells here: it is materialised while it has any.
    # Queuing it for every arrival cost 3 passes per cell (150 for 50 cells at once).
    membership, queued = recording_membership()
    first, second = ("r", "s", "st", "a"), ("r", "s", "st", "b")
    other_stack, other_space = ("r", "s", "st2", "c"), ("r", "s2", "st", "d")
    membership.observe(first, "me", deleted=False)
    assert queued == [(Kind.STACK, first[:3]), (Kind.SPACE, first[:2]), (Kind.REALM, first[:1])]
    queued.clear()
    membership.observe(second, "me", deleted=False)
    assert queued == [], "the stack already runs a cell here"
    membership.observe(other_stack, "me", deleted=False)
    assert queued == [(Kind.STACK, other_stack[:3])]
    queued.clear()
    membership.observe(other_space, "me", deleted=False)
    assert queued == [(Kind.STACK, other_space[:3]), (Kind.SPACE, other_space[:2])]
    queued.clear()
    membership.observe(first, "me", deleted=True)
    assert queued == []
    membership.observe(second, "other", deleted=False)  # moved away: the stack's last cell
    assert queued == [(Kind.STACK, first[:3])]
    queued.clear()
    for key in (other_stack, other_space):
        membership.observe(key, None, deleted=True)
    assert queued == [
        (Kind.STACK, other_stack[:3]),
        (Kind.SPACE, other_stack[:2]),
        (Kind.STACK, other_space[:3]),
        (Kind.SPACE, other_space[:2]),
        (Kind.REALM, ("r",)),
    ]
    assert membership.keys_below(("r",)) == []


def test_membership_queues_a_joined_space_for_its_first_and_last_joiner() -> None:
    membership, queued = recording_membership()
    joined = frozenset({("r", "shared")})
    membership.observe(("r", "s", "st", "a"), "me", deleted=False, joins=joined)
    assert (Kind.SPACE, ("r", "shared")) in queued
    queued.clear()
    membership.observe(("r", "s", "st", "b"), "me", deleted=False, joins=joined)
    assert queued == []
    assert membership.keys_below(("r", "shared")) == [("r", "s", "st", "a"), ("r", "s", "st", "b")]
    membership.observe(("r", "s", "st", "a"), "me", deleted=True)
    assert queued == []
    membership.observe(("r", "s", "st", "b"), "me", deleted=False)  # no longer joins
    assert queued == [(Kind.SPACE, ("r", "shared"))]
    assert membership.keys_below(("r", "shared")) == []


@pytest.mark.parametrize("kind", [Kind.REALM, Kind.SPACE, Kind.STACK])
def test_key_of_layers(kind: Kind) -> None:
    # The parents queued above are the documents' own keys.
    docs: dict[Kind, Realm | Space | Stack] = {
        Kind.REALM: Realm(metadata=ObjectMeta(name="r")),
        Kind.SPACE: Space.model_validate({"metadata": {"name": "s"}, "spec": {"realmId": "r"}}),
        Kind.STACK: Stack.model_validate(
            {"metadata": {"name": "st"}, "spec": {"realmId": "r", "spaceId": "s"}}
        ),
    }
    assert key_of(docs[kind]) == ("r", "s", "st")[: LAYER_DEPTH[kind]]


LAYER_DEPTH = {Kind.REALM: 1, Kind.SPACE: 2, Kind.STACK: 3}


class FakeRegistry:
    """Just enough of the registry for the scheduler's release pass over one stack."""

    def __init__(self, stack: Stack) -> None:
        self.store = FakeStore(stack)
        self.removed: list[str] = []

    async def list(self, kind: Kind, scope: tuple[str, ...] = ()) -> Any:
        from types import SimpleNamespace

        items = [self.store.obj] if kind == Kind.STACK else []
        return SimpleNamespace(items=items, resource_version=1)

    async def get(self, kind: Kind, key: tuple[str, ...]) -> Any:
        return await self.store.get(kind, key)

    async def update_status(self, obj: Any) -> Any:
        return await self.store.update_status(obj)

    async def remove_finalizer(self, kind: Kind, key: tuple[str, ...], name: str) -> Any:
        self.removed.append(name)
        finalizers = [f for f in self.store.obj.metadata.finalizers if f != name]
        metadata = self.store.obj.metadata.model_copy(update={"finalizers": finalizers})
        self.store.obj = self.store._bump(self.store.obj.model_copy(update={"metadata": metadata}))
        return self.store.obj


async def test_the_leader_releases_lost_and_unregistered_nodes_only() -> None:
    from kukeon.controllers.scheduler import Scheduler

    names = ["alive", "lost", "deleted"]
    stack = Stack(
        metadata=ObjectMeta(
            name="st", finalizers=[node_finalizer(Kind.STACK, name) for name in names]
        )
    )
    for name in names:
        stack.status.nodes[name] = ready(f"/{name}")
    registry = FakeRegistry(stack)
    scheduler = Scheduler(registry=registry, node_name="alive", node_lost_timeout=1)  # type: ignore[arg-type]
    released = await scheduler.release_gone_nodes(registered={"alive", "lost"}, gone={"lost"})
    assert released == 2
    assert sorted(registry.removed) == sorted(
        node_finalizer(Kind.STACK, name) for name in ("lost", "deleted")
    )
    left = registry.store.obj
    assert set(left.status.nodes) == {"alive"}
    assert left.metadata.finalizers == [node_finalizer(Kind.STACK, "alive")]


async def test_a_node_whose_lease_is_alive_is_never_released() -> None:
    from kukeon.controllers.scheduler import Scheduler

    # "deleted" lost its Node document but its kukeond still heartbeats; "lost" is NotReady
    # for long but its lease came back before the Node said Ready again.
    names = ["deleted", "lost", "dead"]
    stack = Stack(
        metadata=ObjectMeta(
            name="st", finalizers=[node_finalizer(Kind.STACK, name) for name in names]
        )
    )
    for name in names:
        stack.status.nodes[name] = ready(f"/{name}")
    registry = FakeRegistry(stack)
    scheduler = Scheduler(registry=registry, node_name="leader", node_lost_timeout=1)  # type: ignore[arg-type]
    released = await scheduler.release_gone_nodes(
        registered={"lost"}, gone={"lost"}, alive={"deleted", "lost", "leader"}
    )
    assert released == 1
    assert registry.removed == [node_finalizer(Kind.STACK, "dead")]
    assert set(registry.store.obj.status.nodes) == {"deleted", "lost"}
