"""The v1 driver on this host's real controller hierarchies (/sys/fs/cgroup/<controller>)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from kukeon.runtime.cgroups import (
    MANAGED_V1_CONTROLLERS,
    CgroupLimits,
    CgroupPath,
    Delegation,
    open_driver,
)
from tests.integration.cgroups.conftest import V1Setup, leftovers, start_forking

pytestmark = pytest.mark.integration

CELL = CgroupPath.of("realm", "space", "stack", "cell")


def tree(setup: V1Setup) -> set[Path]:
    return set(leftovers(setup.mounts, setup.root))


def controller_dir(setup: V1Setup, controller: str, path: CgroupPath) -> Path:
    for hierarchy in setup.driver.managed:
        if controller in hierarchy.controllers:
            return setup.driver.directory(hierarchy, path)
    raise AssertionError(f"{controller} is not mounted")


async def test_open_driver_picks_v1_on_this_host(v1: V1Setup) -> None:
    assert v1.driver.version == 1
    assert open_driver(root=v1.root).version == 1
    assert v1.driver.controllers <= MANAGED_V1_CONTROLLERS
    assert {"cpu", "memory", "pids"} <= v1.driver.controllers


async def test_tree_created_twice_is_the_same_tree(v1: V1Setup) -> None:
    first = await v1.driver.ensure(CELL, delegation=Delegation.ALL)
    after_first = tree(v1)

    second = await v1.driver.ensure(CELL)

    assert first.changed
    assert not second.changed
    assert tree(v1) == after_first
    assert first.path == f"{v1.root}/realm/space/stack/cell"
    assert second.subtree_controllers == tuple(sorted(v1.driver.controllers))
    for hierarchy in v1.driver.managed:
        assert v1.driver.directory(hierarchy, CELL).is_dir()
    # cpuset cgroups start empty and refuse processes until they inherit cpus/mems
    cpuset = controller_dir(v1, "cpuset", CELL)
    host = Path("/sys/fs/cgroup/cpuset")
    for name in ("cpuset.cpus", "cpuset.mems"):
        assert (cpuset / name).read_text() == (host / name).read_text()
    # named hierarchies and the unified mount are not populated by ensure
    for mount in v1.driver.swept:
        assert not (mount / v1.root.strip("/")).exists()


async def test_limits_are_written_and_read_back(v1: V1Setup) -> None:
    limits = CgroupLimits(
        memory_max_bytes=64 * 1024 * 1024,
        cpu_shares=512,
        cpu_quota_us=50_000,
        cpu_period_us=100_000,
        pids_max=32,
    )

    state = await v1.driver.ensure(CELL, limits=limits)

    memory = controller_dir(v1, "memory", CELL)
    cpu = controller_dir(v1, "cpu", CELL)
    pids = controller_dir(v1, "pids", CELL)
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(64 * 1024 * 1024)
    assert (cpu / "cpu.shares").read_text().strip() == "512"
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert (pids / "pids.max").read_text().strip() == "32"
    assert state.limits == {
        "memory.limit_in_bytes": str(64 * 1024 * 1024),
        "cpu.shares": "512",
        "cpu.cfs_quota_us": "50000",
        "cpu.cfs_period_us": "100000",
        "pids.max": "32",
    }
    assert not (await v1.driver.set_limits(CELL, limits)).changed

    reset = await v1.driver.set_limits(CELL, CgroupLimits())

    assert reset.changed
    assert int(reset.limits["memory.limit_in_bytes"]) > 1 << 62
    assert reset.limits["cpu.shares"] == "1024"
    assert reset.limits["cpu.cfs_quota_us"] == "-1"
    assert reset.limits["pids.max"] == "max"
    assert not (await v1.driver.set_limits(CELL, CgroupLimits())).changed


def in_cgroup(pid: int, controller: str, relative: str) -> bool:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path == relative
    return False


async def test_removal_kills_the_process_and_leaves_nothing(
    v1: V1Setup, sleeper: subprocess.Popen[bytes]
) -> None:
    task = CELL.child("task")
    await v1.driver.ensure(CELL, limits=CgroupLimits(pids_max=16))
    await v1.driver.ensure(task)
    await v1.driver.add_process(task, sleeper.pid)
    relative = v1.driver.cgroup_path(task)
    for controller in ("memory", "pids", "cpu", "freezer", "cpuset"):
        assert in_cgroup(sleeper.pid, controller, relative), controller
    assert await v1.driver.list_processes(CELL) == (sleeper.pid,)
    assert await v1.driver.list_processes(CELL, recursive=False) == ()
    stats = await v1.driver.read_stats(CELL)
    assert stats.pids == 1
    assert stats.memory_bytes is not None
    # runc joins tasks into the named and unified hierarchies too (mkdir -p): mimic that
    for mount in v1.driver.swept:
        joined = mount / relative.strip("/")
        joined.mkdir(parents=True)
        (joined / "cgroup.procs").write_text(str(sleeper.pid))

    removal = await v1.driver.remove(CgroupPath.of("realm"))

    assert removal.killed == (sleeper.pid,)
    assert sleeper.wait(timeout=10) == -9
    mounts = [*(h.mount_point for h in v1.driver.managed), *v1.driver.swept]
    assert tree(v1) == {mount / v1.root.strip("/") for mount in mounts}
    assert not (await v1.driver.remove(CgroupPath.of("realm"))).changed
    assert not (await v1.driver.remove(CELL, prune_empty_parents=True)).changed
    assert await v1.driver.inspect(CELL) is None

    await v1.driver.remove_root()

    assert tree(v1) == set()


async def test_prune_keeps_the_parents_that_still_have_children(v1: V1Setup) -> None:
    other = CgroupPath.of("realm", "space", "stack", "other")
    await v1.driver.ensure(CELL)
    await v1.driver.ensure(other)

    await v1.driver.remove(CELL, prune_empty_parents=True)
    assert await v1.driver.inspect(other) is not None

    removal = await v1.driver.remove(other, prune_empty_parents=True)

    realm_dirs = [p for p in removal.removed if p.name == "realm"]
    assert len(realm_dirs) == len(v1.driver.managed)
    for hierarchy in v1.driver.managed:
        root_dir = hierarchy.mount_point / v1.root.strip("/")
        assert root_dir.is_dir()
        assert not any(entry.is_dir() for entry in root_dir.iterdir())


def wait_for_pids(path: Path, at_least: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        if len(pids) >= at_least or time.monotonic() > deadline:
            return pids
        time.sleep(0.02)


async def test_a_process_that_keeps_forking_is_removed(
    v1: V1Setup, forker: subprocess.Popen[bytes]
) -> None:
    task = CELL.child("task")
    await v1.driver.ensure(task)
    await v1.driver.add_process(task, forker.pid)
    start_forking(forker)
    pids = await asyncio.to_thread(wait_for_pids, controller_dir(v1, "pids", task), 5)
    assert len(pids) >= 5

    removal = await v1.driver.remove(CELL, prune_empty_parents=True)

    assert forker.pid in removal.killed
    assert len(removal.killed) >= 5
    assert forker.wait(timeout=10) == -9
    assert await v1.driver.inspect(CELL) is None
    assert await v1.driver.list_processes(CgroupPath.of("realm")) == ()


async def test_twenty_spaces_leave_no_cgroup_behind(v1: V1Setup) -> None:
    for index in range(20):
        cell = CgroupPath.of("realm", f"space{index}", "stack", "cell")
        state = await v1.driver.ensure(cell, limits=CgroupLimits(pids_max=10 + index))
        assert state.limits["pids.max"] == str(10 + index)
        await v1.driver.remove(CgroupPath.of("realm", f"space{index}"), prune_empty_parents=True)

    spaces = [CgroupPath.of("realm", f"space{index}", "stack", "cell") for index in range(20)]
    await asyncio.gather(*(v1.driver.ensure(space) for space in spaces))
    await asyncio.gather(*(v1.driver.remove(space, prune_empty_parents=True) for space in spaces))

    mounts = [h.mount_point for h in v1.driver.managed]
    assert tree(v1) == {mount / v1.root.strip("/") for mount in mounts}


def pids_file(setup: V1Setup, name: str, path: CgroupPath | None = None) -> str:
    for hierarchy in setup.driver.managed:
        if "pids" in hierarchy.controllers:
            directory = hierarchy.mount_point / setup.root.strip("/")
            if path is not None:
                directory = setup.driver.directory(hierarchy, path)
            return (directory / name).read_text().strip()
    raise AssertionError("pids is not mounted")


def wait_for_root_pids(setup: V1Setup, at_least: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        current = int(pids_file(setup, "pids.current"))
        if current >= at_least or time.monotonic() > deadline:
            return current
        time.sleep(0.02)


async def test_the_root_holds_every_realm_together_under_its_pids_max(
    v1: V1Setup, sleeper: subprocess.Popen[bytes], forker: subprocess.Popen[bytes]
) -> None:
    """Two realms, each allowed 1000 tasks, under a root allowed 12: a fork bomb in one
    stops when both together hold 12 (a private root: the host's pids are not at risk)."""
    assert await v1.driver.limit_existing_root(pids_max=12) is None  # kukeond's start
    assert tree(v1) == set()
    first = await v1.driver.ensure_root(pids_max=12)
    second = await v1.driver.ensure_root(pids_max=12)
    assert first.changed
    assert not second.changed
    assert first.path == v1.root
    assert first.limits == {"pids.max": "12"}
    quiet, bomb = CgroupPath.of("quiet", "task"), CgroupPath.of("bomb", "task")
    for realm in ("quiet", "bomb"):
        await v1.driver.ensure(CgroupPath.of(realm), limits=CgroupLimits(pids_max=1000))
    await v1.driver.ensure(quiet)
    await v1.driver.ensure(bomb)
    await v1.driver.add_process(quiet, sleeper.pid)
    await v1.driver.add_process(bomb, forker.pid)

    start_forking(forker)
    reached = await asyncio.to_thread(wait_for_root_pids, v1, 12)
    await asyncio.sleep(0.3)  # forking goes on (or the shell gave up): no task more

    assert reached == 12
    assert int(pids_file(v1, "pids.current")) == 12
    assert int(pids_file(v1, "pids.current", CgroupPath.of("bomb"))) == 11
    assert pids_file(v1, "pids.max", CgroupPath.of("bomb")) == "1000"
    assert sleeper.poll() is None  # the other realm's task is untouched

    # A hand-written root limit is put back by the next ensure.
    root_max = controller_dir(v1, "pids", CgroupPath.of("bomb")).parent / "pids.max"
    root_max.write_text("max")
    restored = await v1.driver.ensure_root(pids_max=12)
    assert restored.changed
    assert root_max.read_text().strip() == "12"
    root_max.write_text("max")  # kukeond's start with realms from before: set, not made
    started = await v1.driver.limit_existing_root(pids_max=12)
    assert started is not None
    assert started.limits == {"pids.max": "12"}
    unlimited = await v1.driver.ensure_root(pids_max=None)
    assert unlimited.limits == {"pids.max": "max"}

    removal = await v1.driver.remove_root()
    assert forker.pid in removal.killed or forker.poll() is not None
    assert tree(v1) == set()
