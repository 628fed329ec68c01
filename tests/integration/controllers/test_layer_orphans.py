"""A space, then a realm, deleted while kukeond was down: its next start removes their host side.

While the daemon is stopped the documents go from etcd (as they do when the scheduler
leader released the finalizers of a node that was lost meanwhile). The restarted daemon's
orphan collector, which runs before the controllers, must remove the stack's and the
space's cgroups, the space's conflist, egress chain, bridge and subnet record, the realm's
cgroup and containerd namespace, and nothing else: the other space of the realm and its
running cell, another node's namespace, a namespace kukeon did not label.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.api import Kind, key_of
from kukeon.controllers.realm import namespace_node_label
from kukeon.daemon.app import Daemon, etcd_config
from kukeon.runtime.cgroups import CgroupPath
from kukeon.runtime.containerd.containers import LABEL_MANAGED, LABEL_REALM
from kukeon.runtime.network import (
    JsonFileSubnetStore,
    NftEgress,
    bridge_name,
    delete_link,
    link_exists,
)
from kukeon.runtime.network.egress import chain_name
from kukeon.runtime.network.space import space_conflist_path
from kukeon.store import KeyLayout, Registry
from tests.fixtures.kukeond import Kukeond

from .conftest import speed_up
from .helpers import cell_doc, cell_key, cgroup_dirs, container, container_ids, task_ids

pytestmark = pytest.mark.integration


async def host_of_space(
    k: Kukeond, space: str, conf_dir: Path | None = None, *, stack: str | None = None
) -> dict[str, bool]:
    """What of space `space` (and its stack, `st-<space>` by default) this node has."""
    bridge = bridge_name(k.realm, space, k.config.instance)
    directory = conf_dir or k.config.cni_conf_dir
    conflist = space_conflist_path(
        conf_dir=directory, realm=k.realm, space=space, instance=k.config.instance
    )
    chains = (await NftEgress(table=k.config.nft_table).state()).chains
    subnets = JsonFileSubnetStore(path=k.config.state_dir / "network" / "subnets.json")
    return {
        "space cgroup": bool(cgroup_dirs(k, k.realm, space)),
        "stack cgroup": bool(cgroup_dirs(k, k.realm, space, stack or f"st-{space}")),
        "conflist": await asyncio.to_thread(conflist.exists),
        "egress chain": chain_name(bridge) in chains,
        "bridge": await link_exists(bridge),
        "subnet": f"{k.realm}/{space}" in await subnets.assignments(),
        "files": (k.config.state_dir / "cells" / k.realm / space).exists(),
    }


async def namespaces(k: Kukeond) -> set[str]:
    return {ns.name for ns in await k.containerd.namespaces.list()}


@contextlib.asynccontextmanager
async def stopped(k: Kukeond) -> AsyncIterator[Registry]:
    """kukeond stopped (its workloads run on); a registry of its own meanwhile; started again."""
    await k.daemon.stop()
    registry = await Registry.connect(etcd_config(k.config, endpoints=k.config.etcd_endpoints))
    try:
        yield registry
    finally:
        await registry.close()
        daemon = Daemon(k.config)
        await daemon.start()
        k.daemon = daemon
        assert daemon.registry is not None
        k.registry = daemon.registry
        speed_up(k)


async def erase(registry: Registry, prefix: str, scope: tuple[str, ...]) -> None:
    """Remove every document at and below `scope` from etcd, children first, no finalizer run."""
    layout = KeyLayout(prefix)
    for kind in (Kind.CELL, Kind.STACK, Kind.SPACE, Kind.REALM):
        for obj in (await registry.list(kind)).items:
            key = key_of(obj)
            if key[: len(scope)] == scope:
                await registry.client.delete(layout.key(kind, key).encode())


async def test_a_space_then_a_realm_deleted_while_down_leave_nothing(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    # s1 keeps its conflist in a directory of its own: found through the node's note.
    custom = tmp_path / "cni-custom"
    await k.hierarchy(space="s1", stack="st-s1", cniConfigPath=str(custom))
    await k.apply({"kind": "Space", "metadata": {"name": "s2"}, "spec": {"realmId": k.realm}})
    await k.apply(
        {
            "kind": "Stack",
            "metadata": {"name": "st-s2"},
            "spec": {"realmId": k.realm, "spaceId": "s2"},
        }
    )
    await k.wait_for(Kind.STACK, (k.realm, "s2", "st-s2"), state="Ready")
    await k.apply(cell_doc(k, "a", [container(k, "a")], space="s1", stack="st-s1"))
    await k.apply(cell_doc(k, "b", [container(k, "b")], space="s2", stack="st-s2"))
    key_a = cell_key(k, "a", space="s1", stack="st-s1")
    key_b = cell_key(k, "b", space="s2", stack="st-s2")
    await k.wait_for(Kind.CELL, key_a, state="Ready")
    await k.wait_for(Kind.CELL, key_b, state="Ready")
    everything = dict.fromkeys(
        ("space cgroup", "stack cgroup", "conflist", "egress chain", "bridge", "subnet", "files"),
        True,
    )
    nothing = dict.fromkeys(everything, False)
    assert await host_of_space(k, "s1", custom) == everything
    assert await host_of_space(k, "s2") == everything
    assert k.namespace in await namespaces(k)
    labels = (await k.containerd.namespaces.get(k.namespace)).labels
    assert labels[namespace_node_label(k.config.node_name)] == "true"

    # Namespaces that are not this node's: another node's realm, and an unlabelled one.
    other_node = f"{k.realm}-other.kukeon.io"
    unlabelled = f"{k.realm}-plain.kukeon.io"
    await k.containerd.namespaces.ensure(
        other_node,
        labels={LABEL_MANAGED: "true", LABEL_REALM: f"{k.realm}-other", "kukeon.io/node.x": "true"},
    )
    await k.containerd.namespaces.ensure(unlabelled)
    try:
        # Down: space s1 (with its stack and cell a) is deleted.
        async with stopped(k) as registry:
            await erase(registry, k.config.etcd_prefix, (k.realm, "s1"))

        assert await host_of_space(k, "s1", custom) == nothing
        assert list(custom.iterdir()) == []
        assert not cgroup_dirs(k, *key_a)
        assert "s1_st-s1_a_a" not in await container_ids(k)
        # Nothing else was touched: s2 and its cell run on, untouched.
        assert await host_of_space(k, "s2") == everything
        assert "s2_st-s2_b_b" in await task_ids(k)
        await k.wait_for(Kind.CELL, key_b, state="Ready")
        assert k.namespace in await namespaces(k)
        assert cgroup_dirs(k, k.realm)
        controllers = k.daemon.controllers
        assert controllers is not None
        assert await controllers.collect_orphans() == []

        # Down again: the whole realm goes, and s2's teardown had been cut short after its
        # egress chain and conflist went (bridge, subnet record, cgroups still there).
        async with stopped(k) as registry:
            await erase(registry, k.config.etcd_prefix, (k.realm,))
            await NftEgress(table=k.config.nft_table).remove(
                bridge=bridge_name(k.realm, "s2", k.config.instance)
            )
            s2_conflist = space_conflist_path(
                conf_dir=k.config.cni_conf_dir,
                realm=k.realm,
                space="s2",
                instance=k.config.instance,
            )
            await asyncio.to_thread(s2_conflist.unlink)

        assert await host_of_space(k, "s2") == nothing
        assert not cgroup_dirs(k, k.realm)
        assert not (k.config.state_dir / "cells" / k.realm).exists()
        assert k.namespace not in await namespaces(k)
        assert not (await NftEgress(table=k.config.nft_table).state()).exists
        assert {other_node, unlabelled} <= await namespaces(k)
        controllers = k.daemon.controllers
        assert controllers is not None
        assert await controllers.collect_orphans() == []
    finally:
        for name in (other_node, unlabelled):
            with contextlib.suppress(Exception):
                await k.containerd.namespaces.delete(name)
        # The fixture sweeps the spaces still in the registry: s1 left it early.
        with contextlib.suppress(Exception):
            await NftEgress(table=k.config.nft_table).remove(
                bridge=bridge_name(k.realm, "s1", k.config.instance)
            )
        with contextlib.suppress(Exception):
            await delete_link(bridge_name(k.realm, "s1", k.config.instance))


async def test_a_running_node_collects_leftovers_and_keeps_what_its_cells_need(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply({"kind": "Space", "metadata": {"name": "idle"}, "spec": {"realmId": k.realm}})
    await k.wait_for(Kind.SPACE, (k.realm, "idle"), state="Ready")
    key = cell_key(k, "c")
    await k.apply(cell_doc(k, "c", [container(k, "a")]))
    await k.wait_for(Kind.CELL, key, state="Ready")
    controllers = k.daemon.controllers
    assert controllers is not None
    cgroups = controllers.host.cgroups
    # Leftovers: a realm without a document, a space of the live realm without one, and
    # the cgroup of a space whose document exists but has no cell (nor entry) here.
    ghost = f"{k.realm}-ghost"
    for parts in ((ghost, "s", "st"), (k.realm, "gone", "st"), (k.realm, "idle")):
        await cgroups.ensure(CgroupPath(parts))
    try:
        removed = await controllers.collect_orphans()
        assert sorted(removed) == sorted(
            [
                f"cgroup of stack {ghost}/s/st",
                f"cgroup of space {ghost}/s",
                f"cgroup of realm {ghost}",
                f"cgroup of stack {k.realm}/gone/st",
                f"cgroup of space {k.realm}/gone",
                f"cgroup of space {k.realm}/idle",
            ]
        ), removed
        assert not cgroup_dirs(k, ghost)
        assert not cgroup_dirs(k, k.realm, "gone")
        assert not cgroup_dirs(k, k.realm, "idle")
        assert cgroup_dirs(k, *key)
        kept = await host_of_space(k, "s1", stack="st1")
        assert all(kept.values()), kept
        assert "s1_st1_c_a" in await task_ids(k)
        assert await controllers.collect_orphans() == []
        await k.wait_for(Kind.CELL, key, state="Ready")
    finally:
        with contextlib.suppress(Exception):
            await cgroups.remove(CgroupPath((ghost,)))
