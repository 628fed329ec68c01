"""How many tasks (processes and threads) kukeon's cgroups may hold on this host.

Two ceilings, both `pids.max`: each realm's default (`realmPidsLimit`, half of the host's
limit) keeps one realm from taking the others' share, and the kukeon root's (the host's
limit less `hostReservedPids`) keeps every realm together from taking the host's: two
realms at their default could otherwise reach `kernel.pid_max`, and then sshd, systemd and
kukeond itself cannot fork (as systemd's `TasksMax` on a slice, kubelet's system-reserved
pids). kukeond, its CNI plugins and the log copiers it starts are in kukeond's own cgroup,
not below the root, so the reserve is theirs too.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from .starterrors import StartupError

log = logging.getLogger(__name__)

RESERVED_PIDS_MIN = 1024
RESERVED_PIDS_SHARE = 10
"""Unset `hostReservedPids`: this percentage of the host's limit, at least the minimum."""

PROC_KERNEL = Path("/proc/sys/kernel")


def host_pids_limit(proc_kernel: Path = PROC_KERNEL) -> int | None:
    """Tasks the kernel allows in all: `kernel.pid_max` or `kernel.threads-max`, the
    smaller (a thread takes a pid, and `pids.max` counts threads); None if unreadable."""
    allowed = []
    for name in ("pid_max", "threads-max"):
        with contextlib.suppress(OSError, ValueError):
            allowed.append(int((proc_kernel / name).read_text()))
    return min(allowed) if allowed else None


def default_reserved_pids(host_limit: int) -> int:
    return max(RESERVED_PIDS_MIN, host_limit * RESERVED_PIDS_SHARE // 100)


def root_pids_limit(reserved: int | None, host_limit: int | None) -> int | None:
    """The kukeon root's `pids.max`: the host's limit less the reserve (0: no ceiling; None:
    the default reserve). A reserve that leaves the realms nothing is refused at start."""
    if reserved == 0 or host_limit is None:
        return None
    reserve = default_reserved_pids(host_limit) if reserved is None else reserved
    if reserve >= host_limit:
        raise StartupError(
            f"hostReservedPids {reserve} leaves the realms nothing: this host allows "
            f"{host_limit} tasks in all (kernel.pid_max, kernel.threads-max); give less"
        )
    return host_limit - reserve


def own_cgroups_inside(root: str, proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> list[str]:
    """kukeond's own cgroups (``hierarchy:path``) at or below the kukeon root: there its
    own processes would count against the realms' ceiling instead of the host's reserve."""
    prefix = "/" + root.strip("/")
    inside = []
    with contextlib.suppress(OSError):
        for line in proc_self_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if path == prefix or path.startswith(prefix + "/"):
                inside.append(f"{controllers or 'unified'}:{path}")
    return inside
