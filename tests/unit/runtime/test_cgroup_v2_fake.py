"""The v2 driver against a fake cgroupfs that enforces the kernel's rules (see fake_cgroupfs)."""

from __future__ import annotations

import asyncio
import errno
import signal
from pathlib import Path

import pytest

from kukeon.runtime.cgroups import (
    CgroupBusyError,
    CgroupIOError,
    CgroupLimits,
    CgroupMode,
    CgroupNotWritableError,
    CgroupPath,
    CgroupV2Driver,
    ControllerUnavailableError,
    Delegation,
    NoInternalProcessesError,
    open_driver,
)
from tests.unit.runtime.fake_cgroupfs import FakeCgroupFs

CELL = CgroupPath.of("realm", "space", "stack", "cell")
FULL = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids")


def make(
    tmp_path: Path, offered: tuple[str, ...] = FULL, **fake_options: bool
) -> tuple[FakeCgroupFs, CgroupV2Driver]:
    fake = FakeCgroupFs(tmp_path / "cgroup", offered=offered, **fake_options)
    driver = CgroupV2Driver(fs_root=fake.root, root="/kukeon", fs=fake, kill_timeout=1.0)
    return fake, driver


def words(path: Path) -> set[str]:
    return set(path.read_text().split())


async def test_full_tree_delegates_the_resource_controllers_at_every_level(
    tmp_path: Path,
) -> None:
    fake, driver = make(tmp_path)
    fake.spawn(fake.root)  # the root may hold processes and still delegate

    state = await driver.ensure(CELL)

    assert state.path == "/kukeon/realm/space/stack/cell"
    assert state.version == 2
    assert state.subtree_controllers == ("cpu", "io", "memory", "pids")
    assert state.changed
    level = fake.root
    for part in ("kukeon", "realm", "space", "stack", "cell"):
        assert words(level / "cgroup.subtree_control") == {"cpu", "io", "memory", "pids"}
        level = level / part
        assert words(level / "cgroup.controllers") == {"cpu", "io", "memory", "pids"}
        assert (level / "memory.max").is_file()
        assert not (level / "cpuset.cpus").exists()  # cpuset is not a default resource
    assert words(level / "cgroup.subtree_control") == {"cpu", "io", "memory", "pids"}
    assert [op for op in fake.operations if op[0] == "mkdir"] == [
        ("mkdir", "/kukeon"),
        ("mkdir", "/kukeon/realm"),
        ("mkdir", "/kukeon/realm/space"),
        ("mkdir", "/kukeon/realm/space/stack"),
        ("mkdir", "/kukeon/realm/space/stack/cell"),
    ]


async def test_second_ensure_is_a_noop(tmp_path: Path) -> None:
    fake, driver = make(tmp_path)
    limits = CgroupLimits(memory_max_bytes=256 * 1024 * 1024 + 1, cpu_shares=512, pids_max=64)
    first = await driver.ensure(CELL, limits=limits)
    operations = list(fake.operations)

    second = await driver.ensure(CELL, limits=limits)

    assert not second.changed
    assert fake.operations == operations  # nothing written the second time
    assert second.subtree_controllers == first.subtree_controllers
    assert second.limits == first.limits


async def test_partial_offer_delegates_only_what_the_host_has(tmp_path: Path) -> None:
    _fake, driver = make(tmp_path, offered=("memory", "pids"))

    state = await driver.ensure(CELL, limits=CgroupLimits(memory_max_bytes=1 << 20))

    assert state.subtree_controllers == ("memory", "pids")
    assert state.limits["memory.max"] == str(1 << 20)
    assert "cpu.weight" not in state.limits
    with pytest.raises(ControllerUnavailableError) as caught:
        await driver.set_limits(CELL, CgroupLimits(cpu_shares=512))
    assert caught.value.controllers == ("cpu",)
    assert "cpu" in str(caught.value)
    assert str(driver.directory(CELL)) in str(caught.value)


async def test_nothing_offered_delegates_nothing(tmp_path: Path) -> None:
    _fake, driver = make(tmp_path, offered=())

    state = await driver.ensure(CELL, limits=CgroupLimits())

    assert state.subtree_controllers == ()
    assert state.limits == {}  # nothing to reset where no controller arrives


async def test_nested_cell_delegates_everything_offered(tmp_path: Path) -> None:
    _fake, driver = make(tmp_path)

    nested = await driver.ensure(CELL, delegation=Delegation.ALL)
    sibling = await driver.ensure(CgroupPath.of("realm", "space", "stack", "plain"))

    assert nested.subtree_controllers == tuple(sorted(FULL))
    assert sibling.subtree_controllers == ("cpu", "io", "memory", "pids")
    # ancestors had to carry the extra controllers down to the nested cell
    stack = driver.directory(CgroupPath.of("realm", "space", "stack"))
    assert words(stack / "cgroup.subtree_control") == set(FULL)
    container = await driver.ensure(CELL.child("inner"), delegation=Delegation.NONE)
    assert (driver.directory(CELL.child("inner")) / "hugetlb.2MB.max").is_file()
    assert container.subtree_controllers == ()


async def test_limits_are_written_converted_and_reset(tmp_path: Path) -> None:
    _fake, driver = make(tmp_path)
    limits = CgroupLimits(
        memory_max_bytes=256 * 1024 * 1024 + 1, cpu_shares=512, cpu_quota_us=50_000, pids_max=64
    )

    state = await driver.ensure(CELL, limits=limits)

    assert state.limits == {
        "memory.max": str(256 * 1024 * 1024),  # the kernel keeps whole pages
        "cpu.weight": "20",  # 512 shares
        "cpu.max": "50000 100000",
        "pids.max": "64",
    }
    reset = await driver.set_limits(CELL, CgroupLimits())
    assert reset.changed
    assert reset.limits == {
        "memory.max": "max",
        "cpu.weight": "100",
        "cpu.max": "max 100000",
        "pids.max": "max",
    }
    assert await driver.inspect(CELL) == reset.__class__(
        path=reset.path,
        version=2,
        subtree_controllers=reset.subtree_controllers,
        limits=reset.limits,
        changed=False,
    )


async def test_no_internal_processes_is_reported(tmp_path: Path) -> None:
    fake, driver = make(tmp_path)
    stack = CgroupPath.of("realm", "space", "stack")
    await driver.ensure(stack, delegation=Delegation.NONE)
    squatter = fake.spawn(driver.directory(stack))

    with pytest.raises(NoInternalProcessesError) as caught:
        await driver.ensure(CELL)

    assert caught.value.pids == (squatter,)
    assert caught.value.path == driver.directory(stack)
    assert "no-internal-processes" in str(caught.value)


async def test_processes_go_in_leaves_only(tmp_path: Path) -> None:
    fake, driver = make(tmp_path)
    await driver.ensure(CELL)
    leaf = CELL.child("task")
    await driver.ensure(leaf, delegation=Delegation.NONE)
    pid = fake.spawn(fake.root)

    with pytest.raises(CgroupBusyError, match="leaf cgroups only"):
        await driver.add_process(CELL, pid)
    await driver.add_process(leaf, pid)

    assert await driver.list_processes(CELL) == (pid,)
    assert await driver.list_processes(CELL, recursive=False) == ()
    stats = await driver.read_stats(leaf)
    assert stats.pids == 1
    assert stats.cpu_usage_ns == 0


async def test_removal_kills_then_removes_leaf_first(tmp_path: Path) -> None:
    fake, driver = make(tmp_path)
    await driver.ensure(CELL)
    pids = []
    for name in ("a", "b"):
        await driver.ensure(CELL.child(name), delegation=Delegation.NONE)
        pids.append(fake.spawn(driver.directory(CELL.child(name))))

    removal = await driver.remove(CELL)

    assert sorted(removal.killed) == sorted(pids)
    assert not any(fake.alive(pid) for pid in pids)
    rmdirs = [op for op in fake.operations if op[0] == "rmdir"]
    assert rmdirs == [
        ("rmdir", "/kukeon/realm/space/stack/cell/a"),
        ("rmdir", "/kukeon/realm/space/stack/cell/b"),
        ("rmdir", "/kukeon/realm/space/stack/cell"),
    ]
    kill_index = fake.operations.index(("write", "/kukeon/realm/space/stack/cell/cgroup.kill=1"))
    assert kill_index < fake.operations.index(rmdirs[0])
    assert driver.directory(CELL.parent).is_dir()  # type: ignore[arg-type]
    again = await driver.remove(CELL)
    assert not again.changed


async def test_removal_without_cgroup_kill_freezes_and_signals(tmp_path: Path) -> None:
    fake, driver = make(tmp_path, has_cgroup_kill=False)
    leaf = CELL.child("task")
    await driver.ensure(CELL)
    await driver.ensure(leaf, delegation=Delegation.NONE)
    pid = fake.spawn(driver.directory(leaf))

    removal = await driver.remove(CELL)

    assert removal.killed == (pid,)
    assert (pid, signal.SIGKILL) in fake.signals
    cell_dir = "/kukeon/realm/space/stack/cell"
    writes = [op[1] for op in fake.operations if op[0] == "write"]
    assert writes.index(f"{cell_dir}/cgroup.freeze=1") < writes.index(f"{cell_dir}/cgroup.freeze=0")
    assert not driver.directory(CELL).exists()


async def test_prune_stops_at_levels_with_other_children_and_keeps_the_root(
    tmp_path: Path,
) -> None:
    fake, driver = make(tmp_path)
    other = CgroupPath.of("realm", "space", "stack", "other")
    await driver.ensure(CELL)
    await driver.ensure(other)

    first = await driver.remove(CELL, prune_empty_parents=True)
    assert driver.directory(CgroupPath.of("realm", "space", "stack")).is_dir()
    assert [str(p) for p in first.removed] == [str(driver.directory(CELL))]

    second = await driver.remove(other, prune_empty_parents=True)
    assert [fake.relative(p) for p in second.removed] == [
        "/kukeon/realm/space/stack/other",
        "/kukeon/realm/space/stack",
        "/kukeon/realm/space",
        "/kukeon/realm",
    ]
    assert driver.root_dir.is_dir()
    assert fake.subdirectories(driver.root_dir) == []

    gone = await driver.remove_root()
    assert gone.removed == (driver.root_dir,)
    assert not driver.root_dir.exists()
    assert not (await driver.remove_root()).changed


async def test_removing_an_absent_path_is_a_noop(tmp_path: Path) -> None:
    _fake, driver = make(tmp_path)

    removal = await driver.remove(CELL, prune_empty_parents=True)

    assert removal.removed == ()
    assert removal.killed == ()
    assert await driver.inspect(CELL) is None
    assert await driver.list_processes(CELL) == ()


async def test_read_only_cgroupfs_is_named(tmp_path: Path) -> None:
    fake, driver = make(tmp_path, read_only=True)

    with pytest.raises(CgroupNotWritableError) as caught:
        await driver.ensure(CELL)

    assert "not writable" in str(caught.value)
    assert str(fake.root) in str(caught.value)


async def test_a_directory_that_is_not_cgroup2_is_refused(tmp_path: Path) -> None:
    driver = CgroupV2Driver(fs_root=tmp_path, root="/kukeon")

    with pytest.raises(CgroupIOError, match="not a cgroup2 mount"):
        await driver.ensure(CELL)


async def test_open_driver_in_unified_mode_uses_the_given_root(tmp_path: Path) -> None:
    fake = FakeCgroupFs(tmp_path / "cg", offered=("cpu", "memory"))

    driver = open_driver(root="/kukeon-x/y", mode=CgroupMode.UNIFIED, fs_root=fake.root, fs=fake)
    state = await driver.ensure(CgroupPath.of("r"))

    assert driver.version == 2
    assert state.path == "/kukeon-x/y/r"
    assert (fake.root / "kukeon-x" / "y" / "r").is_dir()
    assert await driver.offered_controllers() == frozenset({"cpu", "memory"})


async def test_concurrent_creations_and_pruning_removals_converge(tmp_path: Path) -> None:
    fake, driver = make(tmp_path)
    old = [CgroupPath.of("realm", f"space{i % 3}", "stack", f"old{i}") for i in range(12)]
    new = [CgroupPath.of("realm", f"space{i % 3}", "stack", f"new{i}") for i in range(12)]
    await asyncio.gather(*(driver.ensure(path) for path in old))

    await asyncio.gather(
        *(driver.remove(path, prune_empty_parents=True) for path in old),
        *(driver.ensure(path) for path in new),
    )

    for path in old:
        assert await driver.inspect(path) is None
    for path in new:
        state = await driver.inspect(path)
        assert state is not None
        assert state.subtree_controllers == ("cpu", "io", "memory", "pids")
    await asyncio.gather(*(driver.remove(path, prune_empty_parents=True) for path in new))
    assert fake.subdirectories(driver.root_dir) == []


class _ControllerVanishes(FakeCgroupFs):
    """The parent withdraws ``memory`` between the driver's read and its write."""

    def write_text(self, path: Path, data: str) -> None:
        if path.name == "cgroup.subtree_control" and "+memory" in data.split():
            (path.parent / "cgroup.controllers").write_text("cpu io pids\n")
        super().write_text(path, data)


async def test_kernel_enoent_on_subtree_control_names_the_controller(tmp_path: Path) -> None:
    fake = _ControllerVanishes(tmp_path / "cgroup", offered=("cpu", "io", "memory", "pids"))
    driver = CgroupV2Driver(fs_root=fake.root, root="/kukeon", fs=fake)

    with pytest.raises(ControllerUnavailableError) as caught:
        await driver.ensure(CELL)

    assert caught.value.path == fake.root
    assert "memory" in caught.value.controllers
    assert caught.value.available == ("cpu", "io", "pids")


async def test_children_list_the_levels_below_the_root_or_a_path(tmp_path: Path) -> None:
    _fake, driver = make(tmp_path)
    assert await driver.children() == ()  # no kukeon root yet
    await driver.ensure(CELL)
    await driver.ensure(CgroupPath.of("other"))
    assert await driver.children() == ("other", "realm")
    assert await driver.children(CgroupPath.of("realm", "space")) == ("stack",)
    assert await driver.children(CgroupPath.of("realm", "space", "stack", "cell")) == ()
    assert await driver.children(CgroupPath.of("absent")) == ()


class _RemovedWhileRead(FakeCgroupFs):
    """Another removal rmdirs ``victim`` between our open of its ``cgroup.procs`` and the read.

    The kernel answers ENODEV for a file of a cgroup removed after it was opened (kernfs
    deactivates the node); this is what two removals pruning the same parents meet.
    """

    victim: Path | None = None

    def read_text(self, path: Path) -> str:
        if self.victim is not None and path == self.victim / "cgroup.procs":
            self.rmdir(self.victim)
            self.victim = None
            raise OSError(errno.ENODEV, "No such device", str(path))
        return super().read_text(path)


async def test_pruning_a_parent_another_removal_just_took_is_not_an_error(
    tmp_path: Path,
) -> None:
    fake = _RemovedWhileRead(tmp_path / "cgroup", offered=FULL)
    driver = CgroupV2Driver(fs_root=fake.root, root="/kukeon", fs=fake, kill_timeout=1.0)
    await driver.ensure(CELL)
    fake.victim = driver.directory(CgroupPath.of("realm", "space", "stack"))

    removal = await driver.remove(CELL, prune_empty_parents=True)

    assert fake.victim is None  # the race was met
    assert [fake.relative(p) for p in removal.removed] == [
        "/kukeon/realm/space/stack/cell",
        "/kukeon/realm/space",
        "/kukeon/realm",
    ]
    assert fake.subdirectories(driver.root_dir) == []


async def test_the_roots_pids_limit_is_kept(tmp_path: Path) -> None:
    fake, driver = make(tmp_path)
    assert await driver.limit_existing_root(pids_max=29492) is None
    assert not (fake.root / "kukeon").exists()

    first = await driver.ensure_root(pids_max=29492)

    assert first.changed
    assert first.limits == {"pids.max": "29492"}
    assert first.path == "/kukeon"
    assert "pids" in words(fake.root / "cgroup.subtree_control")
    assert first.subtree_controllers == ("cpu", "io", "memory", "pids")
    assert not (await driver.ensure_root(pids_max=29492)).changed
    (fake.root / "kukeon" / "pids.max").write_text("max")  # by hand: put back
    assert (await driver.ensure_root(pids_max=29492)).changed
    assert (fake.root / "kukeon" / "pids.max").read_text().strip() == "29492"
    (fake.root / "kukeon" / "pids.max").write_text("max")
    restarted = await driver.limit_existing_root(pids_max=29492)
    assert restarted is not None
    assert restarted.limits == {"pids.max": "29492"}
    assert (await driver.ensure_root(pids_max=None)).limits == {"pids.max": "max"}


async def test_no_root_pids_limit_without_the_controller(tmp_path: Path) -> None:
    _, driver = make(tmp_path, offered=("cpu", "memory"))

    state = await driver.ensure_root(pids_max=100)

    assert state.limits == {}
    assert state.subtree_controllers == ("cpu", "memory")
