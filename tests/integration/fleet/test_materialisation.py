"""Per-node materialisation of realms, spaces and stacks on a fleet of in-process nodes.

The nodes share the host's network namespace and one containerd, but each has its own
cgroup root, CNI conf dir and nft table: what a node materialised is its cgroups, its
conflist and its egress chain (the bridge is one link for all of them here, and stays
while a port of any node's cell is on it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kukeon.api import AnyResource, Cell, Kind, Space
from kukeon.controllers.layers import node_finalizer
from kukeon.runtime.network import (
    JsonFileSubnetStore,
    NftEgress,
    bridge_name,
    link_exists,
)
from kukeon.runtime.network.egress import chain_name
from kukeon.runtime.network.space import space_conflist_path
from kukeon.store import NotFound

from .conftest import Fleet, FleetNode

pytestmark = pytest.mark.integration

LAYERS = (Kind.REALM, Kind.SPACE, Kind.STACK)
RELEASE_SECONDS = 1.0
"""`nodeReleaseSeconds` of the test keeping a re-registering node's finalizers (5 s by
default): two passes of the 0.5 s scheduler apart."""
LOST_NODE_GRACE = 2.0
"""The leader's heartbeat grace once a node is crashed for good (20 s in the fleet's
settings, for a live node's heartbeat retrying): the crashed node's lease expires and never
comes back, so the grace only puts off what the test waits for."""


def layer_keys(fleet: Fleet) -> dict[Kind, tuple[str, ...]]:
    return {
        Kind.REALM: (fleet.realm,),
        Kind.SPACE: (fleet.realm, "s1"),
        Kind.STACK: (fleet.realm, "s1", "st1"),
    }


def cgroups_of(node: FleetNode, *parts: str) -> list[Path]:
    relative = "/".join((node.config.cgroup_root.strip("/"), *parts))
    return [h / relative for h in Path("/sys/fs/cgroup").iterdir() if (h / relative).exists()]


def bridge_of(fleet: Fleet, node: FleetNode) -> str:
    """The node's bridge of s1: each node of a test fleet is an installation of its own."""
    return bridge_name(fleet.realm, "s1", node.config.instance)


async def host_has(fleet: Fleet, node: FleetNode) -> dict[str, bool]:
    """What of realm/s1/st1 this node has on the host."""
    instance = node.config.instance
    bridge = bridge_name(fleet.realm, "s1", instance)
    conflist = space_conflist_path(
        conf_dir=node.config.cni_conf_dir, realm=fleet.realm, space="s1", instance=instance
    )
    chains = (await NftEgress(table=node.config.nft_table).state()).chains
    return {
        "realm cgroup": bool(cgroups_of(node, fleet.realm)),
        "stack cgroup": bool(cgroups_of(node, fleet.realm, "s1", "st1")),
        "conflist": await asyncio.to_thread(conflist.exists),
        "egress chain": chain_name(bridge) in chains,
    }


def entries(obj: AnyResource) -> set[str]:
    return set(getattr(obj.status, "nodes", {}))


async def wait_entries(fleet: Fleet, wanted: set[str], *, within: float = 60) -> None:
    for kind, key in layer_keys(fleet).items():

        def ready_on(obj: AnyResource) -> bool:
            nodes = getattr(obj.status, "nodes", {})
            return set(nodes) == wanted and all(str(e.state) == "Ready" for e in nodes.values())

        await fleet.wait_for(kind, key, until=ready_on, within=within)


async def test_a_node_materialises_only_what_its_cells_need(fleet: Fleet) -> None:
    for index in range(2):
        await fleet.add_node(index)
    n0, n1 = (fleet.nodes[name] for name in fleet.names)
    await fleet.hierarchy()
    nothing = dict.fromkeys(("realm cgroup", "stack cgroup", "conflist", "egress chain"), False)
    everything = dict.fromkeys(nothing, True)
    for kind, key in layer_keys(fleet).items():
        found = await fleet.registry.get(kind, key)
        assert str(found.status.state) == "Ready"
        assert entries(found) == set()
    assert await host_has(fleet, n0) == nothing
    assert await host_has(fleet, n1) == nothing

    # A cell on n0: only n0 materialises; one status entry per level, n0's.
    await fleet.apply(fleet.cell_doc("a", nodeName=n0.name))
    await fleet.wait_for(Kind.CELL, fleet.cell_key("a"), state="Ready")
    await wait_entries(fleet, {n0.name})
    assert await host_has(fleet, n0) == everything
    assert await host_has(fleet, n1) == nothing
    for kind, key in layer_keys(fleet).items():
        found = await fleet.registry.get(kind, key)
        assert node_finalizer(kind, n0.name) in found.metadata.finalizers
        assert node_finalizer(kind, n1.name) not in found.metadata.finalizers

    # A cell on n1 too: both nodes, each its own entry (and its own subnet record).
    await fleet.apply(fleet.cell_doc("b", nodeName=n1.name))
    await fleet.wait_for(Kind.CELL, fleet.cell_key("b"), state="Ready")
    await wait_entries(fleet, {n0.name, n1.name})
    assert await host_has(fleet, n1) == everything
    space = await fleet.registry.get(Kind.SPACE, layer_keys(fleet)[Kind.SPACE])
    assert isinstance(space, Space)
    for name in (n0.name, n1.name):
        entry = space.status.nodes[name]
        assert entry.subnet
        assert entry.bridge_name == bridge_of(fleet, fleet.nodes[name])
        assert entry.cni_config_file
        assert entry.cni_config_file.startswith(str(fleet.nodes[name].config.cni_conf_dir))

    # n0's cell leaves: n0 removes its part, n1 keeps its own (and its cell its network).
    await fleet.registry.delete(Kind.CELL, fleet.cell_key("a"))
    await wait_entries(fleet, {n1.name})
    assert await host_has(fleet, n0) == nothing
    assert await host_has(fleet, n1) == everything
    assert await link_exists(bridge_of(fleet, n1))
    for kind, key in layer_keys(fleet).items():
        found = await fleet.registry.get(kind, key)
        assert str(found.status.state) == "Ready"
        assert node_finalizer(kind, n0.name) not in found.metadata.finalizers
    await fleet.wait_for(Kind.CELL, fleet.cell_key("b"), state="Ready")

    # Cells on both nodes again, then the space goes: both hosts are cleaned.
    await fleet.apply(fleet.cell_doc("c", nodeName=n0.name))
    await fleet.wait_for(Kind.CELL, fleet.cell_key("c"), state="Ready")
    await wait_entries(fleet, {n0.name, n1.name})
    await fleet.registry.delete(Kind.SPACE, layer_keys(fleet)[Kind.SPACE], cascade=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        if not (await fleet.registry.list(Kind.SPACE, (fleet.realm,))).items:
            break
        await asyncio.sleep(0.3)
    assert not (await fleet.registry.list(Kind.SPACE, (fleet.realm,))).items
    for node in (n0, n1):
        has = await host_has(fleet, node)
        assert not has["stack cgroup"], node.name
        assert not has["conflist"], node.name
        assert not has["egress chain"], node.name
        assert not await link_exists(bridge_of(fleet, node))
    # The realm has no cell left anywhere: both nodes remove it too.
    await fleet.wait_for(Kind.REALM, (fleet.realm,), until=lambda r: not entries(r))
    for node in (n0, n1):
        assert await host_has(fleet, node) == nothing, node.name


async def test_deletion_does_not_wait_for_a_lost_node(fleet: Fleet) -> None:
    for index in range(2):
        await fleet.add_node(index)
    await fleet.hierarchy()
    survivor = await fleet.leader()
    lost = next(name for name in fleet.names if name != survivor)
    # Scheduler-placed: the cell on the lost node is placed again (deleted there) later.
    for name in ("x", "y"):
        await fleet.apply(fleet.cell_doc(name))
    cells = await fleet.wait_all(
        lambda cs: len(cs) == 2 and all(str(c.status.state) == "Ready" for c in cs)
    )
    placed = {c.metadata.name: c.spec.node_name for c in cells}
    assert set(placed.values()) == {survivor, lost}, placed
    await wait_entries(fleet, {survivor, lost})

    await fleet.crash(lost)
    await fleet.wait_for(Kind.NODE, (lost,), state="NotReady", within=20)
    leader = fleet.nodes[survivor].daemon
    assert leader is not None
    assert leader.fleet is not None
    # The leader drops a lost node's finalizers once it has not heard the node for its
    # heartbeat grace: what is tested is that the deletion goes on without the node, not
    # how long the grace is.
    leader.fleet.scheduler.heartbeats.grace = LOST_NODE_GRACE
    await fleet.registry.delete(Kind.REALM, (fleet.realm,), cascade=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    gone = False
    while loop.time() < deadline and not gone:
        try:
            await fleet.registry.get(Kind.REALM, (fleet.realm,))
        except Exception:
            gone = True
        else:
            await asyncio.sleep(0.5)
    assert gone, "the realm's deletion waited for the lost node"
    assert await host_has(fleet, fleet.nodes[survivor]) == dict.fromkeys(
        ("realm cgroup", "stack cgroup", "conflist", "egress chain"), False
    )
    leftover = [c for c in await fleet.cells() if isinstance(c, Cell)]
    assert leftover == []
    assert leader.fleet.scheduler.stats.released >= 1  # the lost node's finalizers

    # The lost node kept its part of the realm on its host (its finalizers were released
    # for it); when it comes back, its start-up orphan collection removes it, and the
    # bridge goes once its cells' ports are gone.
    returning = fleet.nodes[lost]
    before = await host_has(fleet, returning)
    assert before["realm cgroup"], before
    assert before["conflist"], before
    assert before["egress chain"], before
    await fleet.start(lost)
    assert await host_has(fleet, returning) == dict.fromkeys(before, False)
    assert not await link_exists(bridge_of(fleet, returning))
    subnets = JsonFileSubnetStore(path=returning.config.state_dir / "network" / "subnets.json")
    assert not any(key.startswith(f"{fleet.realm}/") for key in await subnets.assignments())
    assert fleet.namespace not in {ns.name for ns in await fleet.containerd.namespaces.list()}
    assert not (returning.config.state_dir / "cells" / fleet.realm).exists()


async def test_a_running_node_whose_node_document_is_deleted_keeps_its_finalizers(
    fleet: Fleet,
) -> None:
    # A slow heartbeat: n1 registers again only at its next beat, long after the leader's
    # release passes (every RELEASE_SECONDS on either node, whichever leads) have seen it
    # unregistered.
    configs = [
        fleet.make_config(index).model_copy(update={"node_release_seconds": RELEASE_SECONDS})
        for index in (0, 1)
    ]
    configs[1] = configs[1].model_copy(
        update={"node_lease_ttl": 60, "node_heartbeat_seconds": 4 * RELEASE_SECONDS}
    )
    for config in configs:
        fleet.nodes[config.node_name] = FleetNode(name=config.node_name, config=config)
        await fleet.start(config.node_name)
    n1 = fleet.nodes[configs[1].node_name]
    await fleet.hierarchy()
    await fleet.apply(fleet.cell_doc("a", nodeName=n1.name))
    await fleet.wait_for(Kind.CELL, fleet.cell_key("a"), state="Ready")
    await wait_entries(fleet, {n1.name})

    await fleet.registry.delete(Kind.NODE, (n1.name,))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 4 * RELEASE_SECONDS + 10  # its next beat, with room for load
    registered_again = False
    while loop.time() < deadline and not registered_again:
        for kind, key in layer_keys(fleet).items():
            found = await fleet.registry.get(kind, key)
            assert node_finalizer(kind, n1.name) in found.metadata.finalizers, kind
            assert n1.name in entries(found), kind
        try:
            node = await fleet.node(n1.name)
        except NotFound:
            await asyncio.sleep(0.3)
            continue
        registered_again = str(node.status.state) == "Ready"
    assert registered_again, "the node did not register again at its heartbeat"
    leader = next(n.daemon for n in fleet.nodes.values() if fleet.is_leader(n.name))
    assert leader is not None
    assert leader.fleet is not None
    assert leader.fleet.scheduler.release_interval == RELEASE_SECONDS
    assert leader.fleet.scheduler.stats.released == 0
    await fleet.wait_for(Kind.CELL, fleet.cell_key("a"), state="Ready")
    assert await host_has(fleet, n1) == dict.fromkeys(
        ("realm cgroup", "stack cgroup", "conflist", "egress chain"), True
    )
