"""Host layout detection from mountinfo samples, and the pure records of the cgroup package."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.runtime.cgroups import (
    CgroupLimits,
    CgroupMode,
    CgroupPath,
    CgroupUnavailableError,
    InvalidCgroupPathError,
    cpu_shares_to_weight,
    detect_cgroup_mode,
    parse_mountinfo,
)
from kukeon.runtime.cgroups.paths import normalize_root

UNIFIED = """\
22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
25 28 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=814420k,mode=755
28 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
30 26 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
"""

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

LEGACY = """\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup \
rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw shared:15 - cgroup cgroup rw,net_cls,net_prio
"""


def test_unified_host() -> None:
    mounts = parse_mountinfo(UNIFIED)

    assert mounts.mode is CgroupMode.UNIFIED
    assert mounts.unified == Path("/sys/fs/cgroup")
    assert mounts.v1 == ()


def test_hybrid_host_like_this_one() -> None:
    mounts = parse_mountinfo(HYBRID)

    assert detect_cgroup_mode(mountinfo_text=HYBRID) is CgroupMode.HYBRID
    assert mounts.unified == Path("/sys/fs/cgroup/unified")
    by_mount = {h.mount_point.name: h for h in mounts.v1}
    assert by_mount["memory"].controllers == frozenset({"memory"})
    assert by_mount["systemd"].controllers == frozenset()
    assert by_mount["systemd"].name == "systemd"
    assert len(mounts.v1) == 9


def test_legacy_host_with_co_mounted_controllers() -> None:
    mounts = parse_mountinfo(LEGACY)

    assert mounts.mode is CgroupMode.LEGACY
    cpu = next(h for h in mounts.v1 if "cpu" in h.controllers)
    assert cpu.mount_point == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert cpu.controllers == frozenset({"cpu", "cpuacct"})
    systemd = next(h for h in mounts.v1 if h.name == "systemd")
    assert systemd.controllers == frozenset()  # release_agent= and xattr are not controllers


def test_only_a_named_hierarchy_is_not_enough() -> None:
    named_only = LEGACY.splitlines()[1]
    with pytest.raises(CgroupUnavailableError, match="cgroup"):
        _ = parse_mountinfo(named_only + "\n").mode


def test_no_cgroup_mount_is_a_clear_error() -> None:
    with pytest.raises(CgroupUnavailableError, match="no cgroup or cgroup2 mount"):
        detect_cgroup_mode(mountinfo_text=UNIFIED.splitlines()[0])


def test_escaped_mount_points_and_filtering_by_fs_root() -> None:
    text = "50 1 0:40 / /tmp/my\\040cgroups rw - cgroup2 cgroup2 rw\n" + HYBRID

    mounts = parse_mountinfo(text)

    assert mounts.unified == Path("/tmp/my cgroups")
    assert mounts.under(Path("/sys/fs/cgroup")).unified is None
    assert mounts.under(Path("/sys/fs/cgroup")).mode is CgroupMode.LEGACY
    assert mounts.under(Path("/tmp/my cgroups")).mode is CgroupMode.UNIFIED


def test_this_hosts_mountinfo_parses() -> None:
    assert detect_cgroup_mode() in set(CgroupMode)


def test_cpu_shares_convert_like_runc() -> None:
    assert cpu_shares_to_weight(2) == 1
    assert cpu_shares_to_weight(1024) == 39
    assert cpu_shares_to_weight(262_144) == 10_000
    assert cpu_shares_to_weight(0) == 1  # clamped to the v1 minimum
    assert cpu_shares_to_weight(10**9) == 10_000


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="memory_max_bytes"):
        CgroupLimits(memory_max_bytes=-1)
    with pytest.raises(ValueError, match="cpu_quota_us"):
        CgroupLimits(cpu_quota_us=10)
    with pytest.raises(ValueError, match="cpu_period_us"):
        CgroupLimits(cpu_period_us=5_000_000)
    assert not CgroupLimits().cpu_limited


def test_paths_are_built_level_by_level() -> None:
    assert CgroupPath.of("r", "s", "st", "c", "k").parts == ("r", "s", "st", "c", "k")
    assert str(CgroupPath.of("r", "s")) == "r/s"
    assert CgroupPath.of("r", "s").child("x") == CgroupPath(("r", "s", "x"))
    assert CgroupPath.of("r").parent is None
    with pytest.raises(InvalidCgroupPathError, match="space"):
        CgroupPath.of("r", None, "st")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "cgroup.procs", "x" * 256])
def test_path_components_cannot_escape_or_collide(bad: str) -> None:
    with pytest.raises(InvalidCgroupPathError):
        CgroupPath.of("realm", bad)


def test_root_must_be_below_the_hierarchy_root() -> None:
    assert normalize_root("/kukeon-test/x/") == ("kukeon-test", "x")
    with pytest.raises(InvalidCgroupPathError):
        normalize_root("/")
    with pytest.raises(InvalidCgroupPathError):
        normalize_root("/a/../b")
