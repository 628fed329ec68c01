"""The orphan collector's decisions over realms, spaces and stacks (no host services)."""

from __future__ import annotations

import asyncio
import json
from ipaddress import IPv4Network
from pathlib import Path
from types import SimpleNamespace

from kukeon.api import (
    Kind,
    NodeLayerState,
    NodeLayerStatus,
    ObjectMeta,
    Realm,
    Space,
    SpaceNodeStatus,
    Stack,
)
from kukeon.controllers.layergc import (
    LayerCollector,
    LayerInventory,
    _scope_dirs,
    namespace_in_use_elsewhere,
    needed_here,
    own_conflist,
    plan_layer_orphans,
)
from kukeon.controllers.layers import HostLocks, legacy_finalizer, node_finalizer
from kukeon.controllers.realm import namespace_node_label, namespace_nodes
from kukeon.runtime.cgroups import CgroupPath
from kukeon.runtime.containerd.namespaces import Namespace
from kukeon.runtime.network import render_space_conflist
from kukeon.store import NotFound

ME = "n1"


def realm(name: str = "r", *, finalizers: list[str] | None = None) -> Realm:
    return Realm(metadata=ObjectMeta(name=name, finalizers=finalizers or []))


def space(name: str = "s", realm_id: str = "r") -> Space:
    return Space.model_validate({"metadata": {"name": name}, "spec": {"realmId": realm_id}})


def stack(name: str = "st") -> Stack:
    return Stack.model_validate(
        {"metadata": {"name": name}, "spec": {"realmId": "r", "spaceId": "s"}}
    )


def entry() -> NodeLayerStatus:
    return NodeLayerStatus(state=NodeLayerState.READY, cgroup_path="/x")


def test_a_cell_of_this_node_below_keeps_every_level_even_without_documents() -> None:
    cells = [("r", "s", "st", "c")]
    for key in (("r",), ("r", "s"), ("r", "s", "st")):
        assert needed_here(key, doc=None, local_cells=cells, node=ME)
    # A prefix of a name is not a parent: r1's cells do not keep r.
    assert not needed_here(("r",), doc=None, local_cells=[("r1", "s", "st", "c")], node=ME)
    assert not needed_here(("r", "s2"), doc=None, local_cells=cells, node=ME)


def test_a_document_keeps_it_only_with_this_nodes_entry_or_finalizer() -> None:
    assert not needed_here(("r",), doc=None, local_cells=[], node=ME)
    assert not needed_here(("r",), doc=realm(), local_cells=[], node=ME)
    mine = realm(finalizers=[node_finalizer(Kind.REALM, ME)])
    assert needed_here(("r",), doc=mine, local_cells=[], node=ME)
    other = realm(finalizers=[node_finalizer(Kind.REALM, "n2")])
    other.status.nodes["n2"] = entry()
    assert not needed_here(("r",), doc=other, local_cells=[], node=ME)
    with_entry = space()
    with_entry.status.nodes[ME] = SpaceNodeStatus(state=NodeLayerState.READY, cgroup_path="/x")
    assert needed_here(("r", "s"), doc=with_entry, local_cells=[], node=ME)
    # An older store's shared finalizer: not taken over yet, so kept.
    legacy = stack()
    legacy.metadata.finalizers.append(legacy_finalizer(Kind.STACK))
    assert needed_here(("r", "s", "st"), doc=legacy, local_cells=[], node=ME)


def test_the_plan_removes_children_before_parents_and_keeps_what_is_needed() -> None:
    inventory = LayerInventory(
        cgroups={("gone",), ("gone", "s"), ("gone", "s", "st"), ("kept",), ("kept", "s")},
        subnets={("other", "net")},
        namespaces={"ns-only": Namespace(name="ns-only.kukeon.io")},
    )
    candidates = inventory.keys()
    assert ("other",) in candidates  # a subnet record names its realm too
    assert ("ns-only",) in candidates
    kept = realm("kept", finalizers=[node_finalizer(Kind.REALM, ME)])
    plan = plan_layer_orphans(
        candidates,
        docs={("kept",): kept},
        local_cells=[("kept", "s", "st", "c")],
        node=ME,
    )
    assert plan == [
        ("gone", "s", "st"),
        ("gone", "s"),
        ("other", "net"),
        ("gone",),
        ("ns-only",),
        ("other",),
    ]


def test_a_shared_namespace_is_left_to_the_other_nodes_that_materialise_the_realm() -> None:
    labels = {namespace_node_label(ME): "true", namespace_node_label("n2"): "true"}
    namespace = Namespace(name="r.kukeon.io", labels=labels)
    assert namespace_nodes(labels) == {ME, "n2"}
    hosted = realm()
    hosted.status.nodes["n2"] = entry()
    assert namespace_in_use_elsewhere(namespace, doc=hosted, node=ME)
    assert not namespace_in_use_elsewhere(namespace, doc=realm(), node=ME)
    assert not namespace_in_use_elsewhere(namespace, doc=None, node=ME)
    # n3 materialises the realm but never labelled this namespace: a containerd of its own.
    elsewhere = realm()
    elsewhere.status.nodes["n3"] = entry()
    assert not namespace_in_use_elsewhere(namespace, doc=elsewhere, node=ME)
    assert namespace_nodes({"kukeon.io/node.": "true", "kukeon.io/node.x": "false"}) == set()


def test_only_a_conflist_keeping_leases_in_this_nodes_ipam_dir_is_its_own(
    tmp_path: Path,
) -> None:
    ipam = tmp_path / "state" / "network" / "ipam"
    conflist = render_space_conflist(
        network_name="kk-r-s",
        bridge="kk-r-s",
        subnet=IPv4Network("10.1.0.0/24"),
        ipam_data_dir=ipam,
    ).to_json()
    assert own_conflist(conflist, ipam_dir=ipam)
    assert not own_conflist(conflist, ipam_dir=tmp_path / "other")
    assert not own_conflist(None, ipam_dir=ipam)
    assert not own_conflist("not json", ipam_dir=ipam)
    assert not own_conflist(json.dumps({"plugins": [{"type": "bridge"}]}), ipam_dir=ipam)
    assert not own_conflist(json.dumps(["x"]), ipam_dir=ipam)


def test_scope_dirs_are_the_realm_space_and_stack_levels(tmp_path: Path) -> None:
    (tmp_path / "r" / "s" / "st" / "c").mkdir(parents=True)
    (tmp_path / "r2").mkdir()
    (tmp_path / "file").write_text("")
    assert _scope_dirs(tmp_path) == {("r",), ("r", "s"), ("r", "s", "st"), ("r2",)}
    assert _scope_dirs(tmp_path / "missing") == set()


async def test_host_locks_are_one_per_key() -> None:
    locks = HostLocks()
    first = locks(("r",))
    assert locks(("r",)) is first
    assert locks(("r", "s")) is not first
    async with first:
        assert locks(("r",)).locked()
        waiter = asyncio.ensure_future(locks(("r",)).acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
    await waiter
    first.release()


class FakeLayerRegistry:
    """Documents by key; cells none (enough for one level's fresh check)."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, ...], Realm] = {}

    async def get(self, kind: Kind, key: tuple[str, ...]) -> Realm:
        if key not in self.docs:
            raise NotFound("gone")
        return self.docs[key]

    async def list(self, kind: Kind, scope: tuple[str, ...] = ()) -> SimpleNamespace:
        return SimpleNamespace(items=[], resource_version=1)

    def invalid_under(self, kind: Kind, scope: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
        return ()


class RecordingCgroups:
    def __init__(self) -> None:
        self.removed: list[CgroupPath] = []

    async def remove(self, path: CgroupPath) -> None:
        self.removed.append(path)


async def test_a_level_is_checked_again_under_the_controllers_lock() -> None:
    locks = HostLocks()
    registry = FakeLayerRegistry()
    cgroups = RecordingCgroups()
    host = SimpleNamespace(settings=SimpleNamespace(node_name=ME), cgroups=cgroups)
    collector = LayerCollector(
        host=host,  # type: ignore[arg-type]
        registry=registry,  # type: ignore[arg-type]
        locks=locks,
        runs_here=lambda cell: cell.spec.node_name == ME,
    )
    inventory = LayerInventory(cgroups={("r",)})
    # Planned as an orphan, but the realm controller holds the level: a cell arrived and
    # the realm is being materialised here (its finalizer is on the document by now).
    async with locks(("r",)):
        pending = asyncio.ensure_future(collector._collect(("r",), inventory))
        await asyncio.sleep(0.01)
        assert not pending.done()
        registry.docs[("r",)] = realm(finalizers=[node_finalizer(Kind.REALM, ME)])
    await pending
    assert cgroups.removed == []
    assert collector.removed == []
    # Its document gone for good: the leftover goes.
    del registry.docs[("r",)]
    await collector._collect(("r",), inventory)
    assert cgroups.removed == [CgroupPath(("r",))]
    assert collector.removed == ["cgroup of realm r"]
