"""What ``read_stats`` reports on each driver (kukectl top's figures), from the kernel's files.

v2 runs on the fake cgroupfs (this host's cgroup2 mount has no memory controller), with
the statistics files written as the kernel would fill them; v1 on plain directories laid
out as its hierarchies are (the v1 driver only reads there).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kukeon.runtime.cgroups import (
    CgroupLimits,
    CgroupPath,
    CgroupV1Driver,
    CgroupV2Driver,
    V1Hierarchy,
)
from kukeon.runtime.cgroups.records import working_set
from kukeon.runtime.hostusage import parse_cpu_seconds, parse_loadavg, parse_meminfo
from tests.unit.runtime.fake_cgroupfs import FakeCgroupFs

CELL = CgroupPath.of("realm", "space", "stack", "cell")
MiB = 1024 * 1024
V1_UNLIMITED = "9223372036854771712"


def test_working_set_is_usage_less_inactive_file() -> None:
    assert working_set(100, 30) == 70
    assert working_set(100, None) == 100
    assert working_set(10, 30) == 0  # the kernel's counters are not read atomically
    assert working_set(None, 30) is None


async def test_v2_reads_usage_working_set_limit_and_pids(tmp_path: Path) -> None:
    fake = FakeCgroupFs(tmp_path / "cgroup", offered=("cpu", "memory", "pids"))
    driver = CgroupV2Driver(fs_root=fake.root, root="/kukeon", fs=fake)
    await driver.ensure(CELL)
    cell = driver.directory(CELL)
    (cell / "memory.current").write_text(f"{50 * MiB}\n")
    (cell / "memory.stat").write_text(
        f"anon {40 * MiB}\nfile {10 * MiB}\nactive_file {4 * MiB}\ninactive_file {6 * MiB}\n"
    )
    (cell / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (cell / "pids.current").write_text("7\n")

    stats = await driver.read_stats(CELL)
    assert stats.memory_bytes == 50 * MiB
    assert stats.memory_working_set_bytes == 44 * MiB
    assert stats.cpu_usage_ns == 2_500_000_000
    assert stats.pids == 7
    assert stats.memory_limit_bytes is None  # memory.max is "max"

    await driver.set_limits(CELL, CgroupLimits(memory_max_bytes=64 * MiB))
    assert (await driver.read_stats(CELL)).memory_limit_bytes == 64 * MiB


async def test_v2_without_controllers_reads_cpu_only(tmp_path: Path) -> None:
    # a hybrid host's cgroup2 mount: no memory or pids files, cpu.stat is always there
    fake = FakeCgroupFs(tmp_path / "cgroup", offered=("hugetlb",))
    driver = CgroupV2Driver(fs_root=fake.root, root="/kukeon", fs=fake)
    await driver.ensure(CELL)
    stats = await driver.read_stats(CELL)
    assert stats.cpu_usage_ns == 0
    assert stats.memory_bytes is None
    assert stats.memory_working_set_bytes is None
    assert stats.memory_limit_bytes is None
    assert stats.pids is None


def _v1_tree(tmp_path: Path) -> tuple[CgroupV1Driver, dict[str, Path]]:
    hierarchies = [
        V1Hierarchy(tmp_path / name, frozenset(name.split(",")))
        for name in ("cpu,cpuacct", "memory", "pids")
    ]
    driver = CgroupV1Driver(hierarchies=hierarchies, root="/kukeon")
    dirs = {}
    for hierarchy in hierarchies:
        directory = driver.directory(hierarchy, CELL)
        directory.mkdir(parents=True)
        for controller in hierarchy.controllers:
            dirs[controller] = directory
    return driver, dirs


@pytest.mark.parametrize(("limit", "expected"), [(V1_UNLIMITED, None), (str(32 * MiB), 32 * MiB)])
async def test_v1_reads_the_hierarchical_figures(
    tmp_path: Path, limit: str, expected: int | None
) -> None:
    driver, dirs = _v1_tree(tmp_path)
    (dirs["memory"] / "memory.usage_in_bytes").write_text(f"{20 * MiB}\n")
    (dirs["memory"] / "memory.limit_in_bytes").write_text(f"{limit}\n")
    # inactive_file is this cgroup's own pages; total_inactive_file includes its children,
    # as memory.usage_in_bytes does
    (dirs["memory"] / "memory.stat").write_text(
        f"cache 0\ninactive_file 0\ntotal_cache {5 * MiB}\ntotal_inactive_file {3 * MiB}\n"
    )
    (dirs["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\noom_kill 2\n")
    (dirs["cpuacct"] / "cpuacct.usage").write_text("1500000000\n")
    (dirs["pids"] / "pids.current").write_text("4\n")

    stats = await driver.read_stats(CELL)
    assert stats.memory_bytes == 20 * MiB
    assert stats.memory_working_set_bytes == 17 * MiB
    assert stats.memory_limit_bytes == expected
    assert stats.cpu_usage_ns == 1_500_000_000
    assert stats.pids == 4
    assert stats.oom_kills == 2


async def test_v1_absent_cgroup_reads_nothing(tmp_path: Path) -> None:
    driver, _ = _v1_tree(tmp_path)
    stats = await driver.read_stats(CELL.child("gone"))
    assert (stats.memory_bytes, stats.cpu_usage_ns, stats.pids) == (None, None, None)
    assert stats.memory_limit_bytes is None


def test_proc_parsers() -> None:
    stat = "cpu  100 20 30 1000 50 5 5 10 0 0\ncpu0 50 10 15 500 25 2 3 5 0 0\n"
    # user nice system irq softirq steal, in USER_HZ ticks
    hz = os.sysconf("SC_CLK_TCK")
    assert parse_cpu_seconds(stat) == pytest.approx((100 + 20 + 30 + 5 + 5 + 10) / hz)
    meminfo = "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    6000000 kB\n"
    assert parse_meminfo(meminfo) == (8000000 * 1024, 6000000 * 1024)
    assert parse_loadavg("0.50 0.25 0.10 1/234 5678\n") == (0.5, 0.25, 0.1)
    with pytest.raises(ValueError, match="MemAvailable"):
        parse_meminfo("MemTotal: 1 kB\n")
