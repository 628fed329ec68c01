"""The small records the drivers take and return: limits, delegation, observed state.

A driver returns what it *observed* after acting (directories, delegated controllers and
limit files read back), never what it meant to do: controllers copy these values into
``status`` and they must hold even when the kernel silently rounded or refused part of
a request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

# the resource controllers kukeon delegates by default on cgroup v2
RESOURCE_CONTROLLERS = frozenset({"cpu", "memory", "io", "pids"})

CPU_SHARES_MIN = 2
CPU_SHARES_MAX = 262_144
CPU_SHARES_DEFAULT = 1024
CPU_WEIGHT_DEFAULT = 100
CPU_PERIOD_DEFAULT_US = 100_000
# the kernel accepts CFS periods between 1 ms and 1 s and quotas of at least 1 ms
CPU_PERIOD_MIN_US = 1_000
CPU_PERIOD_MAX_US = 1_000_000
CPU_QUOTA_MIN_US = 1_000


class Delegation(enum.StrEnum):
    """Which controllers a cgroup v2 level enables in its ``cgroup.subtree_control``.

    ``RESOURCES`` is ``cpu memory io pids`` filtered by what the host offers; ``ALL`` is
    everything the host offers (a ``nestedCgroupRuntime`` cell, whose containers run their
    own cgroup manager); ``NONE`` makes the ancestors delegate ``RESOURCES`` but leaves the
    path itself delegating nothing, for a leaf that will hold processes (cgroup v2 forbids
    a non-root cgroup to hold processes and delegate at once). cgroup v1 ignores it: every
    v1 controller is present at every level of its hierarchy.
    """

    RESOURCES = "resources"
    ALL = "all"
    NONE = "none"


V1_NESTING_RISK = (
    "cgroup v1 has no namespace delegation: through a writable hierarchy a container "
    "could rewrite its own memory, cpu and pids limits and lift its device allow-list"
)
V2_NESTING_RISK = (
    "the cgroup2 hierarchy is mounted without nsdelegate: a container could rewrite its "
    "own memory, cpu and pids limits through a writable mount"
)


@dataclass(frozen=True, slots=True)
class CgroupNesting:
    """How a container's own cgroup can be handed to it, writable, on this host.

    A ``nestedCgroupRuntime`` cell's containers each get a private cgroup namespace rooted
    at their own cgroup (``<cell>/<container>``) and a writable cgroup mount, so a runtime
    inside (runc, containerd, systemd) can create cgroups below. The container's limits are
    set on that same cgroup, the root of its namespace: only the kernel can keep the
    container from rewriting them. cgroup2 mounted with ``nsdelegate`` does (from inside a
    non-initial cgroup namespace, the files of its root are read-only, except
    ``cgroup.procs``, ``cgroup.threads`` and ``cgroup.subtree_control``); cgroup v1, or
    cgroup2 without ``nsdelegate``, does not. ``guarded`` says which; ``risk`` says what an
    unguarded delegation would let a container do (empty when guarded).
    """

    version: int
    guarded: bool
    risk: str = ""


def clamp_cpu_shares(shares: int) -> int:
    return max(CPU_SHARES_MIN, min(CPU_SHARES_MAX, shares))


def cpu_shares_to_weight(shares: int) -> int:
    """cgroup v1 ``cpu.shares`` [2, 262144] mapped linearly onto v2 ``cpu.weight`` [1, 10000].

    The conversion runc, crun and Kubernetes use, so a limit means the same whichever
    driver applies it (1024 shares, the v1 default, becomes 39).
    """
    shares = clamp_cpu_shares(shares)
    return 1 + ((shares - CPU_SHARES_MIN) * 9999) // (CPU_SHARES_MAX - CPU_SHARES_MIN)


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    """The complete desired limits of one cgroup; ``None`` means the kernel default.

    Passing a ``CgroupLimits`` resets every unset field (unlimited memory and pids, default
    CPU weight, no quota), so a limit removed from a spec disappears on the next apply.
    ``cpu_shares`` uses v1 units everywhere and becomes ``cpu.weight`` on v2.
    """

    memory_max_bytes: int | None = None
    cpu_shares: int | None = None
    cpu_quota_us: int | None = None
    cpu_period_us: int | None = None
    pids_max: int | None = None

    def __post_init__(self) -> None:
        for name in ("memory_max_bytes", "cpu_shares", "pids_max"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.cpu_quota_us is not None and self.cpu_quota_us < CPU_QUOTA_MIN_US:
            raise ValueError(
                f"cpu_quota_us must be >= {CPU_QUOTA_MIN_US} (1 ms), got {self.cpu_quota_us}"
            )
        period = self.cpu_period_us
        if period is not None and not CPU_PERIOD_MIN_US <= period <= CPU_PERIOD_MAX_US:
            raise ValueError(
                f"cpu_period_us must be within [{CPU_PERIOD_MIN_US}, {CPU_PERIOD_MAX_US}], "
                f"got {period}"
            )

    @property
    def memory_limited(self) -> bool:
        return self.memory_max_bytes is not None

    @property
    def cpu_limited(self) -> bool:
        return self.cpu_shares is not None or self.cpu_quota_us is not None

    @property
    def pids_limited(self) -> bool:
        return self.pids_max is not None


@dataclass(frozen=True, slots=True)
class CgroupState:
    """What a driver observed at one cgroup path after acting on it.

    ``path`` is the path inside every hierarchy (``/kukeon/realm/space``): the value for
    ``status.cgroupPath`` and for the OCI spec's ``linux.cgroupsPath``. ``subtree_controllers``
    is, on v2, the path's ``cgroup.subtree_control`` read back; on v1, the controllers whose
    hierarchy holds the path. ``limits`` maps each limit interface file present to the value
    read back from it. ``changed`` says whether this call had to create or write anything,
    so a second identical apply reports ``False``.
    """

    path: str
    version: int
    subtree_controllers: tuple[str, ...]
    limits: dict[str, str] = field(default_factory=dict)
    changed: bool = False


@dataclass(frozen=True, slots=True)
class CgroupRemoval:
    """What a removal did: directories removed (deepest first, every hierarchy) and pids killed."""

    path: str
    removed: tuple[Path, ...] = ()
    killed: tuple[int, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.killed)


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """Usage counters of one cgroup (``None`` when its controller is not present there)."""

    memory_bytes: int | None = None
    """Memory charged to the cgroup and its descendants (``memory.current`` on v2,
    ``memory.usage_in_bytes`` on v1), page cache included."""
    cpu_usage_ns: int | None = None
    """CPU time used by the cgroup and its descendants since it was made (``usage_usec`` of
    ``cpu.stat`` on v2, ``cpuacct.usage`` on v1)."""
    pids: int | None = None
    """Tasks (threads) in the cgroup and its descendants (``pids.current``)."""
    oom_kills: int | None = None
    """Processes of this cgroup killed by an OOM killer (``oom_kill`` of ``memory.events`` on
    v2, of ``memory.oom_control`` on v1)."""
    memory_working_set_bytes: int | None = None
    """``memory_bytes`` less the inactive file cache (``inactive_file`` of ``memory.stat`` on
    v2, ``total_inactive_file`` on v1), never below 0: what the kubelet and ``kubectl top``
    call the working set, the memory the kernel cannot simply drop under pressure."""
    memory_limit_bytes: int | None = None
    """The cgroup's own memory limit (``memory.max``, ``memory.limit_in_bytes``); ``None``
    when unlimited or without a memory controller there."""


@dataclass(frozen=True, slots=True)
class PidsCount:
    """One cgroup's pids counters, read together: ``limit`` its ``pids.max`` (None:
    ``max``), ``current`` its ``pids.current``, ``peak`` its ``pids.peak`` (None where the
    kernel has none), ``refused`` the ``max`` count of its ``pids.events`` (forks refused:
    on v1, and on v2 before Linux 6.13 or with ``pids_localevents``, counted only in the
    forking task's own cgroup; on v2 since, in the cgroup at its limit and above)."""

    cgroup: str
    """``/kukeon`` (the root) or ``/kukeon/realm/...``."""
    limit: int | None
    current: int
    peak: int | None
    refused: int


def working_set(usage: int | None, inactive_file: int | None) -> int | None:
    """``usage`` less the inactive file cache, as the kubelet computes it (never below 0)."""
    if usage is None:
        return None
    if inactive_file is None:
        return usage
    return max(0, usage - inactive_file)
