"""Which cgroup layout the host runs, read from ``/proc/self/mountinfo``.

Three layouts exist in the wild and each needs a different driver:

- **unified**: one cgroup2 hierarchy at ``/sys/fs/cgroup``; every controller lives there.
- **hybrid**: the v1 controller hierarchies at ``/sys/fs/cgroup/<controller>`` hold the
  resource controllers and a cgroup2 hierarchy (usually ``/sys/fs/cgroup/unified``) holds
  few or none (this machine: only ``hugetlb``). Limits must go through v1.
- **legacy**: v1 hierarchies only.

mountinfo is the truth (not the directory names under ``/sys/fs/cgroup``): it says which
mount is cgroup2, which v1 mount carries which controllers (several may share one mount,
e.g. ``cpu,cpuacct``) and which are named hierarchies such as ``name=systemd``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kukeon.runtime.cgroups.errors import CgroupUnavailableError

MOUNTINFO_PATH = Path("/proc/self/mountinfo")

# the controllers a v1 mount can carry; any other super option (rw, xattr, noprefix,
# clone_children, release_agent=..., name=...) is not a controller
V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "debug",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)


class CgroupMode(enum.StrEnum):
    UNIFIED = "unified"
    HYBRID = "hybrid"
    LEGACY = "legacy"


@dataclass(frozen=True, slots=True)
class V1Hierarchy:
    """One mounted v1 hierarchy: its mount point and the controllers bound to it."""

    mount_point: Path
    controllers: frozenset[str]
    # ``systemd`` for ``name=systemd``; a named hierarchy carries no controller
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CgroupMounts:
    """The cgroup mounts of the host as mountinfo lists them."""

    unified: Path | None
    v1: tuple[V1Hierarchy, ...]
    unified_nsdelegate: bool = False
    """The cgroup2 mount's superblock carries ``nsdelegate`` (cgroup namespaces are
    delegation boundaries: see :class:`~.records.CgroupNesting`)."""

    @property
    def mode(self) -> CgroupMode:
        if any(hierarchy.controllers for hierarchy in self.v1):
            return CgroupMode.HYBRID if self.unified is not None else CgroupMode.LEGACY
        if self.unified is not None:
            return CgroupMode.UNIFIED
        raise CgroupUnavailableError(detail="mountinfo lists no cgroup or cgroup2 mount")

    def under(self, fs_root: Path) -> CgroupMounts:
        """Only the mounts at or below ``fs_root`` (mounts elsewhere are not ours)."""

        def inside(path: Path) -> bool:
            return path == fs_root or fs_root in path.parents

        unified = self.unified if self.unified is not None and inside(self.unified) else None
        return CgroupMounts(
            unified=unified,
            v1=tuple(h for h in self.v1 if inside(h.mount_point)),
            unified_nsdelegate=self.unified_nsdelegate and unified is not None,
        )


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as three octal digits
    out: list[str] = []
    index = 0
    while index < len(field):
        char = field[index]
        digits = field[index + 1 : index + 4]
        if char == "\\" and len(digits) == 3 and all(d in "01234567" for d in digits):
            out.append(chr(int(digits, 8)))
            index += 4
        else:
            out.append(char)
            index += 1
    return "".join(out)


def parse_mountinfo(text: str) -> CgroupMounts:
    """Extract the cgroup and cgroup2 mounts from a mountinfo text (first mount of each wins)."""
    unified: Path | None = None
    nsdelegate = False
    hierarchies: list[V1Hierarchy] = []
    seen: set[tuple[frozenset[str], str | None]] = set()
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        if separator < 5 or len(fields) < separator + 3:
            continue
        mount_point = Path(_unescape(fields[4]))
        fstype = fields[separator + 1]
        super_options = fields[separator + 3].split(",") if len(fields) > separator + 3 else []
        if fstype == "cgroup2":
            if unified is None:
                unified = mount_point
                nsdelegate = "nsdelegate" in super_options
        elif fstype == "cgroup":
            controllers = frozenset(opt for opt in super_options if opt in V1_CONTROLLERS)
            names = [opt.removeprefix("name=") for opt in super_options if opt.startswith("name=")]
            name = names[0] if names else None
            key = (controllers, name)
            if key not in seen:
                seen.add(key)
                hierarchies.append(V1Hierarchy(mount_point, controllers, name))
    return CgroupMounts(unified=unified, v1=tuple(hierarchies), unified_nsdelegate=nsdelegate)


def read_cgroup_mounts(*, mountinfo_path: Path = MOUNTINFO_PATH) -> CgroupMounts:
    try:
        text = mountinfo_path.read_text(encoding="utf-8")
    except OSError as error:
        raise CgroupUnavailableError(detail=f"cannot read {mountinfo_path}: {error}") from error
    return parse_mountinfo(text)


def unified_nsdelegate(fs_root: Path, *, mountinfo_path: Path = MOUNTINFO_PATH) -> bool:
    """Whether the cgroup2 mount at ``fs_root`` carries ``nsdelegate`` (False when mountinfo
    cannot be read or does not list it: a fake tree in a test)."""
    try:
        mounts = read_cgroup_mounts(mountinfo_path=mountinfo_path)
    except CgroupUnavailableError:
        return False
    return mounts.unified == fs_root and mounts.unified_nsdelegate


def detect_cgroup_mode(
    *, mountinfo_path: Path = MOUNTINFO_PATH, mountinfo_text: str | None = None
) -> CgroupMode:
    """The host's layout; ``mountinfo_text`` lets tests pass a sample instead of the file."""
    if mountinfo_text is not None:
        return parse_mountinfo(mountinfo_text).mode
    return read_cgroup_mounts(mountinfo_path=mountinfo_path).mode


def controllers_of(hierarchies: Iterable[V1Hierarchy]) -> frozenset[str]:
    found: set[str] = set()
    for hierarchy in hierarchies:
        found |= hierarchy.controllers
    return frozenset(found)
