"""The interface the controllers hold, and the factory that picks a driver for the host.

Controllers never ask which cgroup version runs: they call :func:`open_driver` once at
start and use the :class:`CgroupDriver` it returns. On a hybrid host the v1 driver is
chosen, because the resource controllers (cpu, memory, pids, ...) are bound to the v1
hierarchies there and the cgroup2 mount offers few or none of them; that cgroup2 mount is
still swept on removal, since runc joins tasks into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from kukeon.runtime.cgroups.errors import CgroupUnavailableError
from kukeon.runtime.cgroups.fs import CgroupFs
from kukeon.runtime.cgroups.mode import (
    MOUNTINFO_PATH,
    CgroupMode,
    CgroupMounts,
    read_cgroup_mounts,
    unified_nsdelegate,
)
from kukeon.runtime.cgroups.paths import DEFAULT_ROOT, CgroupPath
from kukeon.runtime.cgroups.records import (
    CgroupLimits,
    CgroupNesting,
    CgroupRemoval,
    CgroupState,
    CgroupStats,
    Delegation,
    PidsCount,
)
from kukeon.runtime.cgroups.v1 import CgroupV1Driver
from kukeon.runtime.cgroups.v2 import DEFAULT_FS_ROOT, CgroupV2Driver


class CgroupDriver(Protocol):
    """What both drivers offer; every method is idempotent and returns what it observed."""

    @property
    def version(self) -> int: ...

    @property
    def root(self) -> str:
        """The kukeon root inside the hierarchy, e.g. ``/kukeon``."""

    def cgroup_path(self, path: CgroupPath) -> str:
        """``/kukeon/realm/space/...``: for ``status.cgroupPath`` and OCI ``linux.cgroupsPath``."""

    def nesting(self) -> CgroupNesting:
        """Whether the kernel keeps a container from rewriting its own cgroup's limits when
        that cgroup is handed to it writable (``nestedCgroupRuntime``)."""

    async def offered_controllers(self) -> frozenset[str]: ...

    async def ensure(
        self,
        path: CgroupPath,
        *,
        delegation: Delegation = Delegation.RESOURCES,
        limits: CgroupLimits | None = None,
    ) -> CgroupState: ...

    async def set_limits(self, path: CgroupPath, limits: CgroupLimits) -> CgroupState: ...

    async def ensure_root(self, *, pids_max: int | None) -> CgroupState:
        """The kukeon root itself with ``pids.max`` ``pids_max`` (None: ``max``) wherever
        the pids controller is: the ceiling of every realm together (``hostReservedPids``)."""

    async def limit_existing_root(self, *, pids_max: int | None) -> CgroupState | None:
        """As ``ensure_root`` where the root is there; where not, None and nothing made
        (kukeond's start: no realm below it to hold, and no empty root left behind)."""

    async def inspect(self, path: CgroupPath) -> CgroupState | None: ...

    async def remove(
        self, path: CgroupPath, *, prune_empty_parents: bool = False
    ) -> CgroupRemoval: ...

    async def remove_root(self) -> CgroupRemoval: ...

    async def children(self, path: CgroupPath | None = None) -> tuple[str, ...]:
        """Names of the child cgroups of ``path`` (of the kukeon root when None), sorted."""

    async def add_process(self, path: CgroupPath, pid: int) -> None: ...

    def log_copier_procs(self, realm: str) -> tuple[Path, ...]:
        """The ``cgroup.procs`` files a log copier of the realm's cells writes its own pid
        to as it starts (``crilog``): its CPU time is the realm's (v1: in the cpu and
        cpuacct hierarchies only, so its memory and pids stay out of the realm's limits)."""

    async def ensure_log_copiers(self, realm: str) -> None:
        """The realm's log copiers' cgroup (``<realm>/kukeon.loggers``), made where absent;
        it goes with the realm's (``remove``)."""

    async def list_processes(
        self, path: CgroupPath, *, recursive: bool = True
    ) -> tuple[int, ...]: ...

    async def read_stats(self, path: CgroupPath) -> CgroupStats: ...

    async def pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]:
        """The pids counters of the kukeon root and of each level down to ``path``, root
        first, where the pids controller is (none without it)."""


def open_driver(
    *,
    root: str = DEFAULT_ROOT,
    mode: CgroupMode | None = None,
    fs_root: Path = DEFAULT_FS_ROOT,
    mounts: CgroupMounts | None = None,
    mountinfo_path: Path = MOUNTINFO_PATH,
    fs: CgroupFs | None = None,
    kill_timeout: float = 5.0,
) -> CgroupDriver:
    """Pick and build the driver for the host (or for the ``mode`` forced by the caller).

    ``fs_root`` bounds what is used: only mounts at or below it count. With
    ``mode=CgroupMode.UNIFIED`` it is the cgroup2 mount itself and mountinfo is not read
    (tests point it at ``/sys/fs/cgroup/unified`` or at a fake tree). For v1, the
    hierarchies come from ``mounts`` or from mountinfo.
    """
    if mode is CgroupMode.UNIFIED:
        return CgroupV2Driver(
            fs_root=fs_root,
            root=root,
            fs=fs,
            kill_timeout=kill_timeout,
            nsdelegate=unified_nsdelegate(fs_root, mountinfo_path=mountinfo_path),
        )
    if mounts is None:
        mounts = read_cgroup_mounts(mountinfo_path=mountinfo_path)
    mounts = mounts.under(fs_root)
    detected = mounts.mode
    chosen = mode if mode is not None else detected
    if chosen is CgroupMode.UNIFIED:
        if mounts.unified is None:
            raise CgroupUnavailableError(detail=f"no cgroup2 mount at or below {fs_root}")
        return CgroupV2Driver(
            fs_root=mounts.unified,
            root=root,
            fs=fs,
            kill_timeout=kill_timeout,
            nsdelegate=mounts.unified_nsdelegate,
        )
    sweep = (mounts.unified,) if mounts.unified is not None else ()
    return CgroupV1Driver(
        hierarchies=mounts.v1, root=root, sweep=sweep, fs=fs, kill_timeout=kill_timeout
    )
