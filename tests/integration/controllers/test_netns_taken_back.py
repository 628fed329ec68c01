"""A running cell whose network namespace file is unmounted behind kukeond's back keeps its
network: the next pass binds the task's own namespace at the path again (`cellnetns`)
instead of attaching a new, empty one, which took the running workload's eth0 away while
its status said Ready."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess

import pytest

from kukeon.api import Cell, Kind
from kukeon.api.container import containerd_container_id
from kukeon.runtime.network import cell_network_id
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, update_cell

pytestmark = pytest.mark.integration


def _eth0(pid: int) -> str:
    """eth0's addresses as the task sees them, read from the host (an exec in the
    container would end in a task event, and so a pass of the cell racing the test)."""
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ip", "-o", "-4", "addr", "show", "eth0"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


async def test_an_unmounted_namespace_file_is_taken_back_from_the_running_task(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "web")
    await k.apply(cell_doc(k, "web", [container(k, "main")]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(ready, Cell)
    ip = ready.status.network.ip
    assert ip
    cid = containerd_container_id(space="s1", stack="st1", cell="web", container="main")
    pid = (await k.containerd.tasks(k.namespace).get(cid)).pid
    assert f"{ip}/" in _eth0(pid)

    path = k.config.netns_dir / cell_network_id(key, k.config.instance)
    # Detached (MNT_DETACH), as an operator's `umount -l`: a plain umount is refused
    # ("target is busy") while any process holds the file open or a propagated copy of the
    # mount is in use, for a moment now and then on a busy host (CI run 1 of stop 50).
    await asyncio.to_thread(subprocess.run, ["umount", "--lazy", str(path)], check=True)
    # A pass may be under way (the one after the cell's Ready): it may have removed the
    # unmounted file or bound a namespace there already; the next pass sorts either out.
    with contextlib.suppress(OSError):
        path.unlink()
    # Any new version of the cell runs a pass (a label here; a kukeond restart alike).
    await update_cell(k, key, metadata={"labels": {"poked": "yes"}})

    assert k.daemon.events is not None
    async with asyncio.timeout(30):
        while True:
            events = (await k.daemon.events.list(k.realm)).items
            if any(e.reason == "NetworkNamespaceRecovered" for e in events):
                break
            await asyncio.sleep(0.2)
    # The path holds the task's namespace again, with its address on eth0 (found there,
    # or made again by the same pass when one before had raced the unmount).
    assert os.stat(path).st_ino == os.stat(f"/proc/{pid}/ns/net").st_ino
    async with asyncio.timeout(30):
        while True:
            if f"{ip}/" in await asyncio.to_thread(_eth0, pid):
                break
            await asyncio.sleep(0.1)
    again = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(again, Cell)
    assert again.status.network.ip == ip
