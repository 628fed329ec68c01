"""The orphan collector removes what no document owns, and nothing else."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind, Space
from kukeon.processes import identify
from kukeon.runtime.containerd import realm_namespace
from kukeon.runtime.containerd.shims import Shim, find_shims
from kukeon.runtime.containerd.tasks import TaskStatus
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


def start_idle_shim(address: str, namespace: str, container_id: str, bundle: Path) -> Shim:
    """A long-running runc shim serving nothing, as containerd leaves one whose task delete
    was cut short by its caller's death (``runtime/containerd/shims.py``)."""
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text("{}")
    (bundle / "log").touch()  # containerd's log FIFO; a file takes the shim's lines too
    binary = shutil.which("containerd-shim-runc-v2")
    assert binary is not None
    argv = [binary, "-namespace", namespace, "-id", container_id, "-address", address]
    publish = ["-publish-binary", shutil.which("containerd") or "containerd", "start"]
    environment = {**os.environ, "TTRPC_ADDRESS": f"{address}.ttrpc"}
    subprocess.run([*argv, *publish], cwd=bundle, env=environment, check=True, timeout=10)
    [shim] = [
        s for s in find_shims(address) if (s.namespace, s.container_id) == (namespace, container_id)
    ]
    return shim


async def _exited(shim: Shim, within: float = 10.0) -> bool:
    for _ in range(int(within / 0.1)):
        if identify(shim.process.pid) != shim.process:
            return True
        await asyncio.sleep(0.1)
    return False


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

    # The document goes behind the daemon's back (no finalizer runs): the pass this starts
    # at once removes the cell's containers...
    controllers = k.daemon.controllers
    assert controllers is not None
    passes = controllers.orphan_passes
    raw = KeyLayout(k.config.etcd_prefix).key(Kind.CELL, cell_key(k, "lost"))
    await k.registry.client.delete(raw.encode())
    deadline = asyncio.get_running_loop().time() + 30
    while controllers.orphan_passes == passes:
        assert asyncio.get_running_loop().time() < deadline, "no orphan pass for the cell"
        await asyncio.sleep(0.1)
    assert "s1_st1_lost_a" not in await container_ids(k)
    # ...and a crash left a network namespace and an IPAM lease of a cell never recorded.
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
    # A shim containerd forgot (kukeond killed during a task delete), and one of a
    # namespace that is not this control plane's: only the first is asked to exit.
    address = controllers.host.containerd.address
    namespace = realm_namespace(k.realm, networks.settings.instance)
    bundles = k.config.state_dir.parent / "shim-bundles"
    shims: list[Shim] = []
    try:
        for where, bundle in ((namespace, "forgotten"), ("someone-else", "others")):
            shims.append(start_idle_shim(address, where, "s1_st1_gone_a", bundles / bundle))
        forgotten, others = shims
        removed = await controllers.collect_orphans()
        assert removed, removed
        assert f"shim {namespace}/s1_st1_gone_a (pid {forgotten.process.pid})" in removed
        assert await _exited(forgotten)
        assert identify(others.process.pid) == others.process
        # The running cell's shim is its task's, and stays.
        [kept_shim] = [s for s in find_shims(address) if s.container_id == "s1_st1_kept_a"]
        assert kept_shim.busy

        kept_net = f"{prefix}{k.realm}_s1_st1_kept"
        assert "s1_st1_lost_a" not in await container_ids(k)
        assert "s1_st1_kept_a" in await container_ids(k)
        assert netns_names(k) == {kept_net, foreign}
    finally:
        await networks.netns.remove(foreign)
        for shim in shims:
            if identify(shim.process.pid) == shim.process:
                os.kill(shim.process.pid, signal.SIGTERM)
        shutil.rmtree(bundles, ignore_errors=True)
    assert cgroup_dirs(k, *cell_key(k, "lost")) == []
    assert cgroup_dirs(k, *cell_key(k, "kept"))
    assert not (k.config.state_dir / "cells" / k.realm / "s1" / "st1" / "lost").exists()
    assert set(leases(k, bridge).values()) == {kept_net}
    assert leases(k, bridge) == {kept.status.network.ip: kept_net}

    # A second pass finds nothing more; the kept cell is still Ready.
    assert await controllers.collect_orphans() == []
    await k.wait_for(Kind.CELL, cell_key(k, "kept"), state="Ready")


async def test_a_cell_whose_document_cannot_be_read_keeps_its_host_side(kukeond: Kukeond) -> None:
    """A bad write into etcd (a typo, a truncated restore) is no request to stop a cell: its
    stack (whose only cell it is) and the orphan collector leave it until its key is deleted
    (or holds a valid document again)."""
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "garbled", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "garbled"), state="Ready")
    raw = KeyLayout(k.config.etcd_prefix).key(Kind.CELL, cell_key(k, "garbled")).encode()
    controllers = k.daemon.controllers
    assert controllers is not None
    await k.registry.client.put(raw, b'{"apiVersion": "kukeon.io/v1beta1", "kind": "Ce')
    try:
        # The stack's controller hears of its last cell leaving at once (the watch says
        # DELETED); it tore the stack down, the task with it, within a second.
        await asyncio.sleep(2)
        assert await controllers.collect_orphans() == []
        task = await k.containerd.tasks(k.namespace).get("s1_st1_garbled_a")
        assert task.status == TaskStatus.RUNNING
        assert cgroup_dirs(k, *cell_key(k, "garbled"))
    finally:
        await k.registry.client.delete(raw)
    removed = await controllers.collect_orphans()
    assert f"container {k.namespace}/s1_st1_garbled_a" in removed, removed
    assert await container_ids(k) == set()
    assert cgroup_dirs(k, *cell_key(k, "garbled")) == []
