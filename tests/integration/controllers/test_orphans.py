"""The orphan collector removes what no document owns, and nothing else."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Cell, Kind, Space
from kukeon.runtime.network import network_id_prefix
from kukeon.store import KeyLayout
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, cgroup_dirs, container, container_ids, netns_names

pytestmark = pytest.mark.integration


def leases(k: Kukeond, bridge: str) -> dict[str, str]:
    directory = k.config.state_dir / "network" / "ipam" / bridge
    return {
        path.name: path.read_text().splitlines()[0].strip()
        for path in directory.iterdir()
        if path.name[0].isdigit()
    }


async def test_orphans_are_collected_and_owned_cells_kept(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "lost", [container(k, "a")]))
    await k.apply(cell_doc(k, "kept", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "lost"), state="Ready")
    kept = await k.wait_for(Kind.CELL, cell_key(k, "kept"), state="Ready")
    assert isinstance(kept, Cell)
    space = await k.registry.get(Kind.SPACE, (k.realm, "s1"))
    assert isinstance(space, Space)
    bridge = space.status.network.bridge_name
    assert bridge

    # The document goes behind the daemon's back (no finalizer runs)...
    raw = KeyLayout(k.config.etcd_prefix).key(Kind.CELL, cell_key(k, "lost"))
    await k.registry.client.delete(raw.encode())
    # ...and a crash left a network namespace and an IPAM lease of a cell never recorded.
    controllers = k.daemon.controllers
    assert controllers is not None
    networks = controllers.host.networks
    prefix = network_id_prefix(networks.settings.instance)
    ghost = f"{prefix}{k.realm}_s1_st1_ghost"
    await asyncio.to_thread(networks.mark_owned, ghost)  # as attach_cell does, first
    await networks.netns.create(ghost)
    ghost_lease = k.config.state_dir / "network" / "ipam" / bridge / "10.255.255.250"
    await asyncio.to_thread(ghost_lease.write_text, f"{ghost}\r\neth0")
    # Another control plane's namespace in the same directory, named as kukeon names its
    # own: no record of this node says it is ours, so it stays.
    foreign = f"kukeon_{k.realm}_s1_st1_foreign"
    await networks.netns.create(foreign)
    try:
        removed = await controllers.collect_orphans()
        assert removed, removed

        kept_net = f"{prefix}{k.realm}_s1_st1_kept"
        assert "s1_st1_lost_a" not in await container_ids(k)
        assert "s1_st1_kept_a" in await container_ids(k)
        assert netns_names(k) == {kept_net, foreign}
    finally:
        await networks.netns.remove(foreign)
    assert cgroup_dirs(k, *cell_key(k, "lost")) == []
    assert cgroup_dirs(k, *cell_key(k, "kept"))
    assert not (k.config.state_dir / "cells" / k.realm / "s1" / "st1" / "lost").exists()
    assert set(leases(k, bridge).values()) == {kept_net}
    assert leases(k, bridge) == {kept.status.network.ip: kept_net}

    # A second pass finds nothing more; the kept cell is still Ready.
    assert await controllers.collect_orphans() == []
    await k.wait_for(Kind.CELL, cell_key(k, "kept"), state="Ready")
