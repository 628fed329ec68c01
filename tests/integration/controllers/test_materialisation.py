"""A node materialises a realm, space and stack only while it runs a cell in them.

One kukeond: the hierarchy is Ready (accepted) before any cell exists, yet nothing of it is
on the host; the first cell brings the cgroups, the containerd namespace, the space's
conflist, bridge and egress chain, and one `status.nodes` entry per level; when the last
cell goes, all of it goes again and the documents stay Ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from kukeon.api import AnyResource, Kind, Realm, Space, Stack
from kukeon.controllers.layers import legacy_finalizer, migrate_legacy_finalizers, node_finalizer
from kukeon.runtime.network import NftEgress, bridge_name, link_exists
from kukeon.runtime.network.egress import chain_name
from kukeon.runtime.network.space import space_conflist_path
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, cgroup_dirs, container

pytestmark = pytest.mark.integration


async def _namespaces(k: Kukeond) -> set[str]:
    return {ns.name for ns in await k.containerd.namespaces.list()}


async def _host_has_nothing(k: Kukeond) -> None:
    bridge = bridge_name(k.realm, "s1", k.config.instance)
    conflist = space_conflist_path(
        conf_dir=k.config.cni_conf_dir,
        realm=k.realm,
        space="s1",
        instance=k.config.instance,
    )
    assert cgroup_dirs(k, k.realm) == []
    assert not await asyncio.to_thread(Path(conflist).exists)
    assert not await link_exists(bridge)
    assert chain_name(bridge) not in (await NftEgress(table=k.config.nft_table).state()).chains


def _released_by(node: str) -> Callable[[AnyResource], bool]:
    """Whether ``node`` is done with a level: its entry dropped and its finalizer released.

    The teardown makes two writes, the entry first (status) and the finalizer after it
    (metadata): a version without the entry may still hold the finalizer, so waiting for
    the entry alone returns one write too early.
    """

    def released(obj: AnyResource) -> bool:
        return (
            node not in getattr(obj.status, "nodes", {})
            and node_finalizer(Kind(obj.kind), node) not in obj.metadata.finalizers
        )

    return released


async def test_layers_follow_the_cells_of_this_node(kukeond: Kukeond) -> None:
    k = kukeond
    node = k.config.node_name
    await k.hierarchy()
    keys = {Kind.REALM: (k.realm,), Kind.SPACE: (k.realm, "s1"), Kind.STACK: (k.realm, "s1", "st1")}

    # Accepted, not materialised: Ready at fleet level, no per-node entry, nothing on the host.
    for kind, key in keys.items():
        found = await k.registry.get(kind, key)
        assert str(found.status.state) == "Ready", (kind, found.status)
        assert getattr(found.status, "nodes", None) == {}
        assert node_finalizer(kind, node) not in found.metadata.finalizers
    await _host_has_nothing(k)

    # The first cell brings every level onto this node.
    await k.apply(cell_doc(k, "one", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "one"), state="Ready")
    realm = await k.registry.get(Kind.REALM, keys[Kind.REALM])
    space = await k.registry.get(Kind.SPACE, keys[Kind.SPACE])
    stack = await k.registry.get(Kind.STACK, keys[Kind.STACK])
    assert isinstance(realm, Realm)
    assert isinstance(space, Space)
    assert isinstance(stack, Stack)
    for obj in (realm, space, stack):
        assert set(obj.status.nodes) == {node}
        entry = obj.status.nodes[node]
        assert str(entry.state) == "Ready"
        assert entry.cgroup_path
        assert entry.cgroup_path == obj.status.cgroup_path  # aggregated for back-compat
        assert node_finalizer(Kind(obj.kind), node) in obj.metadata.finalizers
        assert str(obj.status.state) == "Ready"
    here = space.status.nodes[node]
    assert here.subnet
    assert here.subnet == space.status.network.subnet
    assert (
        here.bridge_name
        == bridge_name(k.realm, "s1", k.config.instance)
        == space.status.network.bridge_name
    )
    assert realm.status.containerd_namespace_ready
    assert cgroup_dirs(k, k.realm, "s1", "st1")
    assert await asyncio.to_thread(Path(here.cni_config_file or "").exists)
    assert await link_exists(here.bridge_name)
    egress = NftEgress(table=k.config.nft_table)
    assert chain_name(here.bridge_name) in (await egress.state()).chains
    assert k.namespace in await _namespaces(k)

    # The last cell leaves: every level goes from the host, the documents stay Ready.
    await k.registry.delete(Kind.CELL, cell_key(k, "one"))
    await k.wait_gone(Kind.CELL, cell_key(k, "one"))
    for kind, key in keys.items():
        left = await k.wait_for(kind, key, until=_released_by(node), within=30)
        assert str(left.status.state) == "Ready"
        assert left.status.nodes == {}
        assert left.status.cgroup_path is None, left.status
    await _host_has_nothing(k)
    # The namespace stays, with no container, as the node's cache of the realm's images.
    assert k.namespace in await _namespaces(k)
    assert not await k.containerd.containers(k.namespace).list()
    assert await k.containerd.images(k.namespace).list()

    # And a new cell brings it all back.
    await k.apply(cell_doc(k, "two", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "two"), state="Ready")
    space = await k.registry.get(Kind.SPACE, keys[Kind.SPACE])
    assert isinstance(space, Space)
    assert str(space.status.nodes[node].state) == "Ready"
    assert await link_exists(bridge_name(k.realm, "s1", k.config.instance))


async def test_deleting_a_hierarchy_nobody_hosts_is_immediate(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.registry.delete(Kind.REALM, (k.realm,), cascade=True)
    await k.wait_gone(Kind.REALM, (k.realm,), within=15)
    await _host_has_nothing(k)


async def test_spaces_of_one_node_get_distinct_subnets_recorded_per_node(kukeond: Kukeond) -> None:
    k = kukeond
    node = k.config.node_name
    await k.hierarchy()
    await k.apply({"kind": "Space", "metadata": {"name": "s2"}, "spec": {"realmId": k.realm}})
    await k.apply(
        {
            "kind": "Stack",
            "metadata": {"name": "st1"},
            "spec": {"realmId": k.realm, "spaceId": "s2"},
        }
    )
    await k.apply(cell_doc(k, "one", [container(k, "a")]))
    await k.apply(cell_doc(k, "two", [container(k, "a")], space="s2"))
    await k.wait_for(Kind.CELL, cell_key(k, "one"), state="Ready")
    await k.wait_for(Kind.CELL, cell_key(k, "two", space="s2"), state="Ready")
    subnets = []
    for name in ("s1", "s2"):
        space = await k.registry.get(Kind.SPACE, (k.realm, name))
        assert isinstance(space, Space)
        entry = space.status.nodes[node]
        assert entry.subnet
        assert IPv4Network(entry.subnet).subnet_of(k.config.subnet_pool)  # the node's own pool
        subnets.append(IPv4Network(entry.subnet))
    assert not subnets[0].overlaps(subnets[1])


async def test_the_shared_finalizer_of_an_older_store_is_migrated(kukeond: Kukeond) -> None:
    k = kukeond
    legacy = legacy_finalizer(Kind.REALM)
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm, "finalizers": [legacy]}})
    await k.wait_for(Kind.REALM, (k.realm,), state="Ready")

    # Another node (not running here, so nothing releases what it takes) starts first.
    migrated = await migrate_legacy_finalizers(k.registry, node="upgraded")
    assert f"Realm {k.realm}" in migrated
    realm = await k.registry.get(Kind.REALM, (k.realm,))
    assert legacy not in realm.metadata.finalizers
    assert node_finalizer(Kind.REALM, "upgraded") in realm.metadata.finalizers
    assert await migrate_legacy_finalizers(k.registry, node="upgraded") == []

    # The running node holds nothing of it: it has no cell there, and nothing on its host.
    assert node_finalizer(Kind.REALM, k.config.node_name) not in realm.metadata.finalizers
    await k.registry.remove_finalizer(
        Kind.REALM, (k.realm,), node_finalizer(Kind.REALM, "upgraded")
    )
