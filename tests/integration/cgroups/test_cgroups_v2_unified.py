"""The v2 driver on this host's real cgroup2 mount (``/sys/fs/cgroup/unified`` on hybrid hosts).

Here that mount offers only ``hugetlb``, so the default ``cpu memory io pids`` filter
delegates nothing and a nested cell delegates ``hugetlb``; the assertions are written
against what the mount offers, so they hold on a unified host as well.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kukeon.runtime.cgroups import (
    RESOURCE_CONTROLLERS,
    CgroupLimits,
    CgroupPath,
    ControllerUnavailableError,
    Delegation,
)
from tests.integration.cgroups.conftest import V2Setup, leftovers

pytestmark = pytest.mark.integration

CELL = CgroupPath.of("realm", "space", "stack", "cell")


def words(path: Path) -> set[str]:
    return set(path.read_text().split())


def proc_cgroup(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


async def test_tree_and_delegated_set_read_back(v2: V2Setup) -> None:
    first = await v2.driver.ensure(CELL)
    after_first = set(leftovers(v2.mounts, v2.root))
    second = await v2.driver.ensure(CELL)

    assert first.changed
    assert not second.changed
    assert set(leftovers(v2.mounts, v2.root)) == after_first
    expected = tuple(sorted(v2.offered & RESOURCE_CONTROLLERS))
    assert first.subtree_controllers == expected == second.subtree_controllers
    cell = v2.driver.directory(CELL)
    assert words(cell / "cgroup.subtree_control") == set(expected)
    assert words(cell / "cgroup.controllers") == set(expected)


async def test_nested_cell_delegates_everything_offered(v2: V2Setup) -> None:
    state = await v2.driver.ensure(CELL, delegation=Delegation.ALL)

    assert state.subtree_controllers == tuple(sorted(v2.offered))
    assert await v2.driver.offered_controllers() == v2.offered
    leaf = await v2.driver.ensure(CELL.child("task"), delegation=Delegation.NONE)
    assert words(v2.driver.directory(CELL.child("task")) / "cgroup.controllers") == v2.offered
    assert leaf.subtree_controllers == ()


async def test_limits_need_their_controller(v2: V2Setup) -> None:
    await v2.driver.ensure(CELL)
    limits = CgroupLimits(memory_max_bytes=1 << 26)

    if "memory" in v2.offered:  # a unified host: the limit lands
        state = await v2.driver.set_limits(CELL, limits)
        assert state.limits["memory.max"] == str(1 << 26)
        return
    with pytest.raises(ControllerUnavailableError) as caught:  # this hybrid host
        await v2.driver.set_limits(CELL, limits)

    assert caught.value.controllers == ("memory",)
    assert str(v2.driver.directory(CELL)) in str(caught.value)
    assert "memory.max is missing" in str(caught.value)


async def test_removal_kills_the_process_and_leaves_nothing(
    v2: V2Setup, sleeper: subprocess.Popen[bytes]
) -> None:
    task = CELL.child("task")
    await v2.driver.ensure(CELL)
    await v2.driver.ensure(task, delegation=Delegation.NONE)
    await v2.driver.add_process(task, sleeper.pid)
    assert f"0::{v2.driver.cgroup_path(task)}" in proc_cgroup(sleeper.pid)
    assert await v2.driver.list_processes(CELL) == (sleeper.pid,)

    removal = await v2.driver.remove(CgroupPath.of("realm"))

    assert removal.killed == (sleeper.pid,)
    assert sleeper.wait(timeout=10) == -9
    root_dir = v2.driver.root_dir
    assert set(leftovers(v2.mounts, v2.root)) == {root_dir}
    assert not (await v2.driver.remove(CgroupPath.of("realm"))).changed

    await v2.driver.remove_root()

    assert leftovers(v2.mounts, v2.root) == []


async def test_the_roots_pids_limit_is_set_where_pids_is_offered(v2: V2Setup) -> None:
    first = await v2.driver.ensure_root(pids_max=4096)
    second = await v2.driver.ensure_root(pids_max=4096)

    assert first.path == v2.root
    assert v2.driver.root_dir.is_dir()
    assert not second.changed
    if "pids" in v2.offered:  # a unified host
        assert first.limits == {"pids.max": "4096"}
        assert (v2.driver.root_dir / "pids.max").read_text().strip() == "4096"
        (v2.driver.root_dir / "pids.max").write_text("max")
        assert (await v2.driver.ensure_root(pids_max=4096)).changed
        assert (v2.driver.root_dir / "pids.max").read_text().strip() == "4096"
    else:  # this hybrid host: pids is v1's, nothing to limit here and nothing refused
        assert first.limits == {}
        assert not (v2.driver.root_dir / "pids.max").exists()
    await v2.driver.ensure(CELL)  # the realms below it are made as before
    assert v2.driver.directory(CELL).is_dir()
