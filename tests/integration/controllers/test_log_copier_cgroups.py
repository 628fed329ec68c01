"""A cell's log copier runs in its realm's cgroup (``<realm>/kukeon.loggers``, the cpu and
cpuacct hierarchies on this v1 host), so the CPU it spends copying a chatty container's
output is the realm's, not the host's beside every realm; its replacement too. Before, the
copier stayed in the shim's cgroup, outside every realm.

The `kukeond` fixture deletes the realm and sweeps the host after the test, passed or failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.daemon.app import Daemon
from kukeon.processes import ProcessId
from kukeon.runtime.cgroups import CgroupPath, CgroupV1Driver, open_driver
from kukeon.runtime.cgroups.paths import LOG_COPIERS
from kukeon.runtime.containerd.logcopier import find_copier
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

# As fast as the shell's builtin echo goes: the copier's work is the container's output.
CHATTER = "while :; do echo 'a line of output, as fast as it goes'; done"
WINDOW_SECONDS = 3.0


def _cpu_cgroup(pid: int) -> str:
    """The process's cgroup in the cpu hierarchy (v1)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    raise AssertionError(f"pid {pid} is in no cpu hierarchy")


def _cpu_seconds(pid: int) -> float:
    """The process's user and system time (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 20.0
    while not await asyncio.to_thread(check):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within 20 s: {what}")
        await asyncio.sleep(0.05)


async def _copier(pid: int, log: Path, *, other_than: ProcessId | None = None) -> ProcessId:
    found: list[ProcessId] = []

    def look() -> bool:
        copier = find_copier(pid, log)
        if copier is not None and copier != other_than:
            found.append(copier)
        return bool(found)

    await _until(look, f"a copier of task {pid}")
    return found[0]


async def _in_cgroup(pid: int, expected: str) -> None:
    # a replacement joins as it starts
    await _until(lambda: _cpu_cgroup(pid) == expected, f"{pid} in {expected}")


async def _joined_copier(
    k: Kukeond, name: str, script: str
) -> tuple[tuple[str, str, str, str], int, Path, str, ProcessId]:
    """A Ready cell of one container running ``script`` whose copier joined its realm's
    copiers' cgroup: the cell's key, the task's pid, its log, that cgroup and the copier."""
    await k.hierarchy()
    await k.apply(cell_doc(k, name, [container(k, "main", script=script)]))
    realm_name, space, stack, cell_name = cell_key(k, name)
    key = (realm_name, space, stack, cell_name)
    cell = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(cell, Cell)
    [status] = cell.status.containers
    assert status.pid is not None
    log = CellFiles(k.config.state_dir, key).log("main")
    copiers = f"{k.config.cgroup_root}/{k.realm}/{LOG_COPIERS}"
    copier = await _copier(status.pid, log)
    await _in_cgroup(copier.pid, copiers)
    return key, status.pid, log, copiers, copier


async def test_a_chatty_cells_copier_spends_its_realms_cpu(kukeond: Kukeond) -> None:
    k = kukeond
    key, task_pid, log, copiers, copier = await _joined_copier(k, "chatty", CHATTER)

    driver = open_driver(root=k.config.cgroup_root)
    assert isinstance(driver, CgroupV1Driver)  # this host's: the fixture's kukeond is v1
    realm, cell_path = CgroupPath((k.realm,)), CgroupPath(key)

    async def usage() -> tuple[int, int, float]:
        realm_ns = (await driver.read_stats(realm)).cpu_usage_ns
        cell_ns = (await driver.read_stats(cell_path)).cpu_usage_ns
        assert realm_ns is not None
        assert cell_ns is not None
        return realm_ns, cell_ns, _cpu_seconds(copier.pid)

    realm_before, cell_before, copier_before = await usage()
    await asyncio.sleep(WINDOW_SECONDS)
    realm_after, cell_after, copier_after = await usage()
    copied = copier_after - copier_before
    assert copied > 0.1, f"the copier spent {copied:.2f} s in {WINDOW_SECONDS} s: not busy"
    beside_cells = (realm_after - realm_before - (cell_after - cell_before)) / 1e9
    # What the realm counts beyond its cells' containers is its copier's (the clock-tick
    # figures of /proc are coarse: most of it, not all).
    assert beside_cells >= 0.7 * copied, (beside_cells, copied)

    # A replacement (kill -9 of the shim's copier) joins the same cgroup.
    os.kill(copier.pid, signal.SIGKILL)
    replacement = await _copier(task_pid, log, other_than=copier)
    await _in_cgroup(replacement.pid, copiers)


def _cgroups_of(pid: int) -> dict[frozenset[str], str]:
    """The process's cgroup in each v1 hierarchy, by the hierarchy's controllers."""
    found: dict[frozenset[str], str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers:
            found[frozenset(controllers.split(","))] = path
    return found


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


async def test_a_copier_an_older_kukeond_started_joins_its_realm_at_start(
    kukeond: Kukeond,
) -> None:
    """A copier outside its realm's copiers' cgroup (where the shim started it, as an older
    kukeond's was) is moved there when kukeond finds it at its start; not its keeper."""
    k = kukeond
    _, task_pid, log, copiers, copier = await _joined_copier(k, "older", "sleep 3600")
    keeper = find_copier(task_pid, log, keeper=True)
    assert keeper is not None
    keeper_cgroups = _cgroups_of(keeper.pid)

    await k.daemon.stop()
    # Back where the shim runs (its parent), in the hierarchies it joined: an older one's.
    shim = _cgroups_of(_parent_of(copier.pid))
    driver = open_driver(root=k.config.cgroup_root)
    assert isinstance(driver, CgroupV1Driver)  # this host's: the fixture's kukeond is v1
    for hierarchy in driver.managed:
        if hierarchy.controllers & {"cpu", "cpuacct"}:
            where = shim[hierarchy.controllers].lstrip("/")
            (hierarchy.mount_point / where / "cgroup.procs").write_text(str(copier.pid))
    assert _cpu_cgroup(copier.pid) != copiers
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry

    await _in_cgroup(copier.pid, copiers)
    assert find_copier(task_pid, log) == copier  # moved, not replaced
    assert _cgroups_of(keeper.pid) == keeper_cgroups
