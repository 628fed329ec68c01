"""Which driver open_driver builds for each layout, and v1 errors that need no real host."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.runtime.cgroups import (
    CgroupLimits,
    CgroupMode,
    CgroupPath,
    CgroupUnavailableError,
    CgroupV1Driver,
    CgroupV2Driver,
    ControllerUnavailableError,
    V1Hierarchy,
    open_driver,
    parse_mountinfo,
)
from tests.unit.runtime.test_cgroup_mode import HYBRID, LEGACY, UNIFIED


def test_unified_layout_gets_the_v2_driver_on_the_cgroup2_mount() -> None:
    driver = open_driver(mounts=parse_mountinfo(UNIFIED), root="/kukeon-a")

    assert isinstance(driver, CgroupV2Driver)
    assert driver.fs_root == Path("/sys/fs/cgroup")
    assert driver.cgroup_path(CgroupPath.of("r", "s")) == "/kukeon-a/r/s"


def test_hybrid_layout_gets_v1_and_sweeps_named_and_unified_mounts() -> None:
    driver = open_driver(mounts=parse_mountinfo(HYBRID))

    assert isinstance(driver, CgroupV1Driver)
    assert driver.root == "/kukeon"
    assert driver.controllers == frozenset(
        {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}
    )
    assert set(driver.swept) == {Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")}


def test_legacy_layout_with_co_mounted_controllers() -> None:
    driver = open_driver(mounts=parse_mountinfo(LEGACY))

    assert isinstance(driver, CgroupV1Driver)
    assert driver.controllers == frozenset({"cpu", "cpuacct", "memory"})
    # net_cls,net_prio carries no managed controller: swept only
    assert Path("/sys/fs/cgroup/net_cls,net_prio") in driver.swept


def test_forcing_v1_on_a_unified_host_is_a_clear_error() -> None:
    with pytest.raises(CgroupUnavailableError, match="no cgroup v1 hierarchy"):
        open_driver(mounts=parse_mountinfo(UNIFIED), mode=CgroupMode.LEGACY)


def test_mounts_outside_fs_root_are_ignored() -> None:
    with pytest.raises(CgroupUnavailableError):
        open_driver(mounts=parse_mountinfo(HYBRID), fs_root=Path("/elsewhere"))


async def test_v1_limit_without_its_hierarchy_names_the_controller(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    driver = CgroupV1Driver(hierarchies=[V1Hierarchy(cpu, frozenset({"cpu"}))], root="/k")
    cell = CgroupPath.of("r", "s", "st", "c")

    with pytest.raises(ControllerUnavailableError) as caught:
        await driver.ensure(cell, limits=CgroupLimits(memory_max_bytes=1 << 20))

    assert caught.value.controllers == ("memory",)
    assert "/k/r/s/st/c" in str(caught.value)
    assert "no cgroup v1 hierarchy with memory is mounted" in str(caught.value)


async def test_v1_children_are_the_union_over_every_hierarchy(tmp_path: Path) -> None:
    cpu, memory, named = tmp_path / "cpu", tmp_path / "memory", tmp_path / "systemd"
    driver = CgroupV1Driver(
        hierarchies=[
            V1Hierarchy(cpu, frozenset({"cpu"})),
            V1Hierarchy(memory, frozenset({"memory"})),
        ],
        root="/k",
        sweep=(named,),
    )
    assert await driver.children() == ()
    (cpu / "k" / "a" / "s").mkdir(parents=True)
    (memory / "k" / "b").mkdir(parents=True)
    (named / "k" / "c").mkdir(parents=True)  # runc makes the path in every hierarchy
    (cpu / "k" / "tasks").write_text("")
    assert await driver.children() == ("a", "b", "c")
    assert await driver.children(CgroupPath.of("a")) == ("s",)
