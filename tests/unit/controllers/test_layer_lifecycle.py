"""Realms, spaces and stacks on one node, end to end over an in-memory store and fake host:
accepted at fleet level, materialised only below a cell of this node (parent first),
torn down when the last cell goes (children first), finalized after every child."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import (
    AnyResource,
    Cell,
    Kind,
    NodeLayerState,
    Realm,
    Space,
    Stack,
    key_of,
    parse_resource,
)
from kukeon.controllers.layers import (
    LayerController,
    legacy_finalizer,
    migrate_legacy_finalizers,
    node_finalizer,
    release_node,
)
from kukeon.controllers.membership import CellMembership
from kukeon.controllers.realm import RealmController, namespace_node_label
from kukeon.controllers.space import SpaceController, conflist_note
from kukeon.controllers.stack import StackController
from kukeon.framework import HandlerContext, Operator, WaitingError
from kukeon.framework.testing import OperatorRunner
from kukeon.runtime.containerd.containers import LABEL_MANAGED, LABEL_REALM
from kukeon.runtime.network import BridgeInUseError
from kukeon.store import Gone
from tests.unit.api.samples import realm_doc, space_doc, stack_doc
from tests.unit.framework.test_operator import settings

from .hostfakes import FakeHost, ScopedStore, cell, handler_context, make_host

CELL_KEY = ("r", "s", "st", "c")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj: AnyResource, reason: Any, message: str, *, type: Any) -> None:
        self.events.append((str(reason), message, str(type)))


class World:
    """A store with r/s/st, the three controllers on node n1 and what they queued."""

    def __init__(self, fake: FakeHost, store: ScopedStore) -> None:
        self.fake, self.store = fake, store
        self.queued: list[tuple[Kind, tuple[str, ...]]] = []
        self.recorder = Recorder()
        self.realms = RealmController(host=fake.host)
        self.spaces = SpaceController(host=fake.host)
        self.stacks = StackController(host=fake.host)
        for layer in self.layers:
            layer.trigger = self.trigger
            layer.recorder = cast(Any, self.recorder)

    @property
    def layers(self) -> tuple[LayerController[Any], ...]:
        return (self.realms, self.spaces, self.stacks)

    def trigger(self, kind: Kind, key: tuple[str, ...]) -> bool:
        self.queued.append((kind, key))
        return True

    async def get(self, kind: Kind, key: tuple[str, ...]) -> Any:
        return await self.store.get(kind, key)

    async def reconcile(self, layer: LayerController[Any], key: tuple[str, ...]) -> Any:
        obj = await self.get(layer.kind, key)
        await layer.reconcile(obj, handler_context(self.store, kind=layer.kind))
        return await self.get(layer.kind, key)

    async def converge(self) -> None:
        for layer, key in zip(self.layers, (("r",), ("r", "s"), ("r", "s", "st")), strict=True):
            await self.reconcile(layer, key)


def parse(doc: dict[str, Any]) -> Any:
    return parse_resource(doc)


@pytest.fixture
async def world(tmp_path: Path) -> World:
    store = ScopedStore()
    await store.create(parse(realm_doc("r")))
    await store.create(parse(space_doc("s", realmId="r")))
    await store.create(parse(stack_doc("st", realmId="r", spaceId="s")))
    return World(make_host(tmp_path), store)


async def test_without_cells_here_everything_is_accepted_and_nothing_built(world: World) -> None:
    await world.converge()
    for kind, key in ((Kind.REALM, ("r",)), (Kind.SPACE, ("r", "s")), (Kind.STACK, CELL_KEY[:3])):
        obj = await world.get(kind, key)
        assert str(obj.status.state) == "Ready"
        assert obj.status.nodes == {}
        assert obj.metadata.finalizers == []
    assert world.fake.cgroups.ensured == []
    assert world.fake.containerd.namespaces.items == {}


async def test_a_cell_here_materialises_each_level_parent_first(world: World) -> None:
    await world.converge()  # Ready at fleet level, nothing built yet
    await world.store.create(cell("c"))
    with pytest.raises(WaitingError, match="Ready on node n1"):
        await world.reconcile(world.spaces, ("r", "s"))
    await world.converge()
    realm = await world.get(Kind.REALM, ("r",))
    assert node_finalizer(Kind.REALM, "n1") in realm.metadata.finalizers
    assert realm.status.nodes["n1"].state == NodeLayerState.READY
    labels = world.fake.containerd.namespaces.items["r.kukeon.io"]
    assert labels[LABEL_MANAGED] == "true"
    assert labels[LABEL_REALM] == "r"
    assert labels[namespace_node_label("n1")] == "true"
    space = await world.get(Kind.SPACE, ("r", "s"))
    assert space.status.nodes["n1"].subnet == "10.88.3.0/24"
    assert space.status.network.bridge_name == "kk-r-s"
    (ensured,) = world.fake.networks.ensured
    assert ensured["egress"].default == "allow"
    note = conflist_note(world.fake.host.settings.state_dir, "r", "s")
    assert note.read_text() == str(ensured["cni_config_path"])
    assert world.fake.cgroups.ensured == [("r",), ("r", "s"), ("r", "s", "st")]
    # Each level, once Ready here, queues its children here; the stack its cell.
    assert (Kind.SPACE, ("r", "s")) in world.queued
    assert (Kind.CELL, CELL_KEY) in world.queued
    assert ("Ready", "ready on node n1", "Normal") in world.recorder.events
    # A second pass changes nothing on the host's status.
    writes = world.store.status_writes
    await world.converge()
    assert world.store.status_writes == writes


async def test_the_last_cell_gone_tears_down_children_first(world: World) -> None:
    await world.store.create(cell("c"))
    await world.converge()
    await world.store.delete(Kind.CELL, CELL_KEY)
    world.queued.clear()
    with pytest.raises(WaitingError, match="space"):
        await world.reconcile(world.realms, ("r",))
    assert (Kind.SPACE, ("r", "s")) in world.queued
    await world.reconcile(world.stacks, ("r", "s", "st"))
    await world.reconcile(world.spaces, ("r", "s"))
    realm = await world.reconcile(world.realms, ("r",))
    assert realm.status.nodes == {}
    assert realm.metadata.finalizers == []
    assert world.fake.cgroups.removed == [("r", "s", "st"), ("r", "s"), ("r",)]
    (removed,) = world.fake.networks.removed
    assert removed["space"] == "s"
    # The namespace stays (its images serve the next cell); a deletion purges it.
    assert "r.kukeon.io" in world.fake.containerd.namespaces.items
    assert (Kind.REALM, ("r",)) in world.queued


async def test_a_foreign_port_on_the_bridge_holds_the_spaces_teardown_and_is_named(
    world: World,
) -> None:
    """Released with a port no kukeon made still on its bridge, the space's finalizer left
    the bridge on the host for good: it holds until the port is gone, and says which."""
    await world.store.create(cell("c"))
    await world.converge()
    await world.store.delete(Kind.CELL, CELL_KEY)
    await world.reconcile(world.stacks, ("r", "s", "st"))
    world.fake.networks.remove_error = BridgeInUseError(bridge="kk-r-s", ports=("tap7",))
    with pytest.raises(WaitingError, match=r"node n1: bridge kk-r-s .* tap7") as raised:
        await world.reconcile(world.spaces, ("r", "s"))
    assert raised.value.reason == "ForeignPortOnBridge"
    space = await world.get(Kind.SPACE, ("r", "s"))
    assert node_finalizer(Kind.SPACE, "n1") in space.metadata.finalizers
    assert ("r", "s") not in world.fake.cgroups.removed

    world.fake.networks.remove_error = None
    space = await world.reconcile(world.spaces, ("r", "s"))
    assert space.metadata.finalizers == []
    assert [removed["space"] for removed in world.fake.networks.removed] == ["s"]


async def test_a_leftover_cgroup_is_torn_down(world: World) -> None:
    world.fake.cgroups.present.add(("r",))
    await world.reconcile(world.realms, ("r",))
    assert world.fake.cgroups.removed == [("r",)]


async def test_a_failing_build_is_reported_on_this_nodes_entry(world: World) -> None:
    await world.store.create(cell("c"))
    await world.reconcile(world.realms, ("r",))
    world.fake.networks.ensure_error = OSError("no bridge plugin")
    with pytest.raises(OSError, match="no bridge plugin"):
        await world.reconcile(world.spaces, ("r", "s"))
    space = await world.get(Kind.SPACE, ("r", "s"))
    entry = space.status.nodes["n1"]
    assert entry.state == NodeLayerState.FAILED
    assert entry.reason == "OSError"
    assert any(event[2] == "Warning" for event in world.recorder.events)


async def test_finalize_waits_for_children_then_purges_the_namespace(world: World) -> None:
    realm = await world.get(Kind.REALM, ("r",))
    ctx = handler_context(world.store)
    with pytest.raises(WaitingError, match="space"):
        await world.realms.finalize(realm, ctx)
    await world.stacks.finalize(await world.get(Kind.STACK, ("r", "s", "st")), ctx)
    await world.store.delete(Kind.STACK, ("r", "s", "st"))
    await world.spaces.finalize(await world.get(Kind.SPACE, ("r", "s")), ctx)
    await world.store.delete(Kind.SPACE, ("r", "s"))
    await world.realms.finalize(await world.get(Kind.REALM, ("r",)), ctx)
    assert world.fake.containerd.namespaces.purged == ["r.kukeon.io"]
    assert ("r",) in world.fake.cgroups.removed
    assert [e[0] for e in world.recorder.events].count("Deleted") == 3


async def test_a_custom_realm_namespace_is_kept_unless_it_is_the_default(tmp_path: Path) -> None:
    fake = make_host(tmp_path, instance="ab12cd")
    default = parse(realm_doc("r"))
    custom = parse(realm_doc("r", namespace="shared"))
    assert fake.host.namespace_of(default) == "r.ab12cd.kukeon.io"
    assert fake.host.namespace_of(custom) == "shared"
    assert fake.host.instance == "ab12cd"


async def test_membership_follows_the_operators_cell_watch() -> None:
    """No watch of its own: the operator's list + watch of cells feeds it (on_change),
    through a relist after the watch broke."""
    store = ScopedStore()
    queued: list[tuple[Kind, tuple[str, ...]]] = []

    def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
        queued.append((kind, key))
        return True

    op = Operator(
        cast(Any, store),
        settings=settings(),
        collector_registry=CollectorRegistry(),
        peering=False,
    )

    @op.reconcile(Kind.CELL)
    async def handle(obj: Cell, ctx: HandlerContext) -> None:
        return None

    membership = CellMembership(node="n1", trigger=trigger)
    op.on_change(Kind.CELL, membership.changed)
    await store.create(cell("a"))
    await store.create(cell("b", node="n2"))
    parents = [(Kind.STACK, ("r", "s", "st")), (Kind.SPACE, ("r", "s")), (Kind.REALM, ("r",))]
    async with OperatorRunner(op) as runner:
        await runner.wait_for(lambda: membership.keys_below(("r",)) == [("r", "s", "st", "a")])
        assert queued == parents
        await store.create(cell("c"))
        await runner.wait_for(lambda: len(membership.keys_below(("r",))) == 2)
        assert queued == parents, "the stack already ran a cell here"
        await store.delete(Kind.CELL, ("r", "s", "st", "a"))
        await runner.wait_for(lambda: membership.keys_below(("r",)) == [("r", "s", "st", "c")])
        # History compacted: the relist finds "c" gone, and the levels are queued.
        store.break_watches(Gone("compacted", compacted_revision=1))
        await store.delete(Kind.CELL, ("r", "s", "st", "c"))
        await runner.wait_for(lambda: membership.keys_below(("r",)) == [])
        assert queued == parents * 2


async def test_legacy_finalizers_become_this_nodes(world: World) -> None:
    realm = await world.get(Kind.REALM, ("r",))
    await world.store.add_finalizer(Kind.REALM, ("r",), legacy_finalizer(Kind.REALM))
    assert await migrate_legacy_finalizers(cast(Any, world.store), node="n1") == ["Realm r"]
    realm = await world.get(Kind.REALM, ("r",))
    assert realm.metadata.finalizers == [node_finalizer(Kind.REALM, "n1")]


async def test_release_node_forgets_a_lost_nodes_entry_and_finalizer(world: World) -> None:
    await world.store.create(cell("c"))
    await world.converge()
    stack = await world.get(Kind.STACK, ("r", "s", "st"))
    await release_node(cast(Any, world.store), stack, "n1", by="n2")
    stack = await world.get(Kind.STACK, ("r", "s", "st"))
    assert stack.status.nodes == {}
    assert stack.metadata.finalizers == []
    assert isinstance(stack, Stack)
    assert key_of(stack) == ("r", "s", "st")
    assert isinstance(await world.get(Kind.SPACE, ("r", "s")), Space)
    assert isinstance(await world.get(Kind.REALM, ("r",)), Realm)
