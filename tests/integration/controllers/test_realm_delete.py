"""Deleting a realm with everything in it leaves nothing of it on the host."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kukeon.api import Kind, Space
from kukeon.runtime.network import NftEgress, link_exists
from kukeon.runtime.network.egress import chain_name
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, cgroup_dirs, container, netns_names

pytestmark = pytest.mark.integration


async def test_realm_delete_removes_every_host_resource(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "one", [container(k, "a"), container(k, "b")]))
    await k.apply(cell_doc(k, "two", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "one"), state="Ready")
    await k.wait_for(Kind.CELL, cell_key(k, "two"), state="Ready")

    space = await k.registry.get(Kind.SPACE, (k.realm, "s1"))
    assert isinstance(space, Space)
    bridge = space.status.network.bridge_name
    conflist = space.status.network.cni_config_file
    assert bridge
    assert conflist
    egress = NftEgress(table=k.config.nft_table)
    assert await link_exists(bridge)
    assert chain_name(bridge) in (await egress.state()).chains
    assert len([n for n in netns_names(k) if k.realm in n]) == 2
    assert cgroup_dirs(k, k.realm)
    namespaces = {ns.name for ns in await k.containerd.namespaces.list()}
    assert k.namespace in namespaces

    await k.registry.delete(Kind.REALM, (k.realm,), cascade=True)
    await k.wait_gone(Kind.REALM, (k.realm,), within=60)

    namespaces = {ns.name for ns in await k.containerd.namespaces.list()}
    assert k.namespace not in namespaces
    assert not await link_exists(bridge)
    state = await egress.state()
    assert chain_name(bridge) not in state.chains
    assert bridge not in state.bridges
    assert not [n for n in netns_names(k) if k.realm in n]
    assert cgroup_dirs(k, k.realm) == []
    assert not (k.config.state_dir / "cells" / k.realm).exists()
    assert not await asyncio.to_thread(Path(conflist).exists)
    attachments = k.config.state_dir / "network" / "attachments"
    assert not list(attachments.glob(f"*{k.realm}*"))
    ipam = k.config.state_dir / "network" / "ipam" / bridge
    assert not ipam.exists()
