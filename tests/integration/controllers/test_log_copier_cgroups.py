"""A container's log copier and its keeper run in their realm's cgroup (``<realm>/_logs``),
the shim's and the ones kukeond starts alike: what logging a realm's output costs is the
realm's. Before, they ran where containerd's shim started them, outside every realm's
cgroup, so a container held to 0.1 CPU that wrote as fast as it could made its copier take
about 0.6 CPU of the host's (seen on a private kukeond, ``yes``)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.controllers.logcopiers import LOG_CGROUP
from kukeon.runtime.containerd.logcopier import find_copier
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

TICKER = "i=0; while :; do echo out-$i; i=$((i+1)); usleep 50000; done"


def _cgroups_of(pid: int) -> set[str]:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return set()
    return {line.split(":", 2)[2] for line in lines}


async def _moved(pid: int, wanted: str, *, within: float = 20) -> set[str]:
    """The cgroups of ``pid`` once one of them is ``wanted`` (or the last seen)."""
    deadline = asyncio.get_running_loop().time() + within
    found = await asyncio.to_thread(_cgroups_of, pid)
    while wanted not in found and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        found = await asyncio.to_thread(_cgroups_of, pid)
    return found


async def test_copiers_and_keepers_run_in_their_realms_cgroup(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "ticker", [container(k, "main", script=TICKER)]))
    cell = await k.wait_for(Kind.CELL, cell_key(k, "ticker"), state="Ready", within=60)
    assert isinstance(cell, Cell)
    [status] = cell.status.containers
    assert status.pid is not None
    realm, space, stack, name = cell_key(k, "ticker")
    log = CellFiles(k.config.state_dir, (realm, space, stack, name)).log("main")
    wanted = f"{k.config.cgroup_root}/{k.realm}/{LOG_CGROUP}"

    copier = await asyncio.to_thread(find_copier, status.pid, log)
    keeper = await asyncio.to_thread(find_copier, status.pid, log, keeper=True)
    assert copier is not None
    assert keeper is not None
    for process in (copier, keeper):
        found = await _moved(process.pid, wanted)
        assert wanted in found, (process, found)

    # A replacement kukeond starts (its own child, in kukeond's cgroup at first) too.
    os.kill(copier.pid, signal.SIGKILL)
    deadline = asyncio.get_running_loop().time() + 20
    replacement = None
    while asyncio.get_running_loop().time() < deadline:
        replacement = await asyncio.to_thread(find_copier, status.pid, log)
        if replacement is not None and replacement.pid != copier.pid:
            break
        await asyncio.sleep(0.2)
    assert replacement is not None
    assert replacement.pid != copier.pid
    found = await _moved(replacement.pid, wanted)
    assert wanted in found, found
