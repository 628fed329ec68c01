"""The cgroup v1 driver, for legacy hosts and the v1 half of hybrid ones.

cgroup v1 has one tree per mounted hierarchy, each carrying one or more controllers
(``/sys/fs/cgroup/memory``, ``/sys/fs/cgroup/cpu``, or ``cpu,cpuacct`` mounted together).
A resource's cgroup is the *same relative path* created in every hierarchy kukeon manages
(:data:`MANAGED_V1_CONTROLLERS`); there is no delegation, so ``subtreeControllers`` reports
the controllers whose hierarchy holds the path. Two v1 quirks matter:

- a new ``cpuset`` cgroup starts with empty ``cpuset.cpus``/``cpuset.mems`` and refuses
  every process (ENOSPC) until they are set, so each level copies its parent's values;
- there is no ``cgroup.kill``: removal freezes the subtree through the freezer hierarchy
  (so nothing forks meanwhile), SIGKILLs every process listed in any hierarchy, thaws, and
  waits until every hierarchy reports the subtree empty before ``rmdir`` leaf first.

Named hierarchies (``name=systemd``), v1 controllers kukeon does not manage (``net_cls``,
``perf_event``, ``hugetlb``, ...) and, on a hybrid host, the cgroup2 ``unified`` mount are
*not* created by :meth:`CgroupV1Driver.ensure`: kukeon sets nothing there. But runc, with the
cgroupfs driver, joins a task into the same path in every mounted hierarchy (``mkdir -p``)
and on task delete removes only the task's own leaf. Those hierarchies are therefore
*swept* on removal (processes killed, directories removed) so that removing a cell, or
the kukeon root, leaves nothing behind anywhere.
"""

from __future__ import annotations

import asyncio
import errno as errno_codes
import os
import time
from collections.abc import Sequence
from pathlib import Path

from kukeon.runtime.cgroups._common import POLL_INTERVAL_S, CgroupFiles
from kukeon.runtime.cgroups.errors import (
    CgroupError,
    CgroupIOError,
    CgroupUnavailableError,
    CgroupWriteError,
    ControllerUnavailableError,
)
from kukeon.runtime.cgroups.fs import CgroupFs, RealCgroupFs
from kukeon.runtime.cgroups.mode import V1Hierarchy, controllers_of
from kukeon.runtime.cgroups.paths import (
    DEFAULT_ROOT,
    CgroupPath,
    log_copiers_path,
    normalize_root,
)
from kukeon.runtime.cgroups.records import (
    CPU_PERIOD_DEFAULT_US,
    CPU_SHARES_DEFAULT,
    V1_NESTING_RISK,
    CgroupLimits,
    CgroupNesting,
    CgroupRemoval,
    CgroupState,
    CgroupStats,
    Delegation,
    PidsCount,
    clamp_cpu_shares,
    working_set,
)
from kukeon.runtime.hostthreads import run_on_host_thread

MANAGED_V1_CONTROLLERS = frozenset(
    {"cpu", "cpuacct", "memory", "pids", "cpuset", "devices", "freezer", "blkio"}
)
LOG_COPIER_CONTROLLERS = frozenset({"cpu", "cpuacct"})
"""The hierarchies where a realm's log copiers join its cgroup (``log_copier_procs``)."""
LIMIT_FILES_V1 = (
    "memory.limit_in_bytes",
    "cpu.shares",
    "cpu.cfs_quota_us",
    "cpu.cfs_period_us",
    "pids.max",
)
# memory.limit_in_bytes reads back as a page-aligned LONG_MAX when unlimited
_V1_UNLIMITED_THRESHOLD = 1 << 62
_ENSURE_ATTEMPTS = 3


def _same_memory_limit(current: str, desired: str, *, page: int) -> bool:
    current_value = int(current)
    if desired == "-1":
        return current_value >= _V1_UNLIMITED_THRESHOLD
    return current_value == (int(desired) // page) * page


class CgroupV1Driver:
    """Manages ``<mount>/<root>/<realm>/...`` in every managed v1 hierarchy.

    ``hierarchies`` are the mounted v1 hierarchies (from mountinfo); those carrying a
    managed controller get the path, the others (and ``sweep`` mounts such as a hybrid
    host's cgroup2 mount) are only cleaned on removal.
    """

    version = 1

    def __init__(
        self,
        *,
        hierarchies: Sequence[V1Hierarchy],
        root: str = DEFAULT_ROOT,
        sweep: Sequence[Path] = (),
        fs: CgroupFs | None = None,
        kill_timeout: float = 5.0,
    ) -> None:
        self._root_parts = normalize_root(root)
        self.managed = tuple(h for h in hierarchies if h.controllers & MANAGED_V1_CONTROLLERS)
        if not self.managed:
            raise CgroupUnavailableError(
                detail="no cgroup v1 hierarchy carries any of "
                + " ".join(sorted(MANAGED_V1_CONTROLLERS))
            )
        managed_mounts = {h.mount_point for h in self.managed}
        others = [h.mount_point for h in hierarchies if h.mount_point not in managed_mounts]
        self.swept = tuple(dict.fromkeys([*others, *sweep]))
        self._files = CgroupFiles(fs if fs is not None else RealCgroupFs())
        self.kill_timeout = kill_timeout

    # -- paths ---------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return "/" + "/".join(self._root_parts)

    @property
    def controllers(self) -> frozenset[str]:
        return controllers_of(self.managed) & MANAGED_V1_CONTROLLERS

    def cgroup_path(self, path: CgroupPath) -> str:
        return "/".join((self.root, *path.parts))

    def _relative(self, path: CgroupPath | None) -> tuple[str, ...]:
        return (*self._root_parts, *(path.parts if path is not None else ()))

    def directory(self, hierarchy: V1Hierarchy, path: CgroupPath) -> Path:
        return hierarchy.mount_point.joinpath(*self._relative(path))

    def _hierarchy_for(self, controller: str) -> V1Hierarchy | None:
        for hierarchy in self.managed:
            if controller in hierarchy.controllers:
                return hierarchy
        return None

    def nesting(self) -> CgroupNesting:
        """Never guarded: v1 has no namespace delegation (see :class:`CgroupNesting`)."""
        return CgroupNesting(version=self.version, guarded=False, risk=V1_NESTING_RISK)

    # -- public async API ------------------------------------------------------------------

    async def offered_controllers(self) -> frozenset[str]:
        return self.controllers

    async def ensure(
        self,
        path: CgroupPath,
        *,
        delegation: Delegation = Delegation.RESOURCES,
        limits: CgroupLimits | None = None,
    ) -> CgroupState:
        """Create ``path`` in every managed hierarchy; apply ``limits`` when given.

        ``delegation`` has no meaning on v1 (every controller reaches every level) and is
        accepted so callers do not care which driver they hold.
        """
        del delegation
        return await run_on_host_thread(self._ensure, path, limits)

    async def set_limits(self, path: CgroupPath, limits: CgroupLimits) -> CgroupState:
        return await run_on_host_thread(self._set_limits, path, limits)

    async def ensure_root(self, *, pids_max: int | None) -> CgroupState:
        """The kukeon root in every managed hierarchy, its ``pids.max`` ``pids_max`` (None:
        ``max``) where the pids hierarchy is mounted: the ceiling of every realm together.
        Without a pids hierarchy there is nothing to limit, and nothing is refused."""
        state = await run_on_host_thread(self._ensure_root, pids_max, True)
        assert state is not None  # made when absent
        return state

    async def limit_existing_root(self, *, pids_max: int | None) -> CgroupState | None:
        """As :meth:`ensure_root` where the root is there; None (nothing made) where not."""
        return await run_on_host_thread(self._ensure_root, pids_max, False)

    async def inspect(self, path: CgroupPath) -> CgroupState | None:
        return await asyncio.to_thread(self._inspect, path)

    async def remove(self, path: CgroupPath, *, prune_empty_parents: bool = False) -> CgroupRemoval:
        """Kill every process below ``path`` in any hierarchy, then rmdir leaf first everywhere.

        With ``prune_empty_parents`` the now-empty ancestors go too, up to (not including)
        the kukeon root. Removing an absent path is a no-op.
        """
        return await run_on_host_thread(self._remove, path, prune_empty_parents)

    async def remove_root(self) -> CgroupRemoval:
        return await run_on_host_thread(self._remove_root)

    async def children(self, path: CgroupPath | None = None) -> tuple[str, ...]:
        """Names of the child cgroups of ``path`` (of the kukeon root when None) in any
        hierarchy, swept ones included (runc makes the path in every mounted hierarchy)."""
        return await asyncio.to_thread(self._children, path)

    async def add_process(self, path: CgroupPath, pid: int) -> None:
        await run_on_host_thread(self._add_process, path, pid)

    async def list_processes(self, path: CgroupPath, *, recursive: bool = True) -> tuple[int, ...]:
        return await asyncio.to_thread(self._list_processes, path, recursive)

    def log_copier_procs(self, realm: str) -> tuple[Path, ...]:
        """Only where the CPU is counted and shared: a copier's memory and pids stay where
        the shim started it, out of the realm's limits, which promise its containers."""
        path = log_copiers_path(realm)
        return tuple(self.directory(h, path) / "cgroup.procs" for h in self._cpu_hierarchies())

    async def ensure_log_copiers(self, realm: str) -> None:
        await run_on_host_thread(self._ensure_log_copiers, realm)

    async def read_stats(self, path: CgroupPath) -> CgroupStats:
        return await asyncio.to_thread(self._read_stats, path)

    async def pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]:
        return await asyncio.to_thread(self._pids_counts, path)

    # -- ensure ------------------------------------------------------------------------------

    def _copy_cpuset(self, cgroup: Path) -> bool:
        changed = False
        for name in ("cpuset.cpus", "cpuset.mems"):
            current = self._files.read(cgroup / name)
            if current:
                continue
            inherited = self._files.read(cgroup.parent / name)
            if not inherited:
                raise ControllerUnavailableError(
                    path=cgroup.parent,
                    controllers=["cpuset"],
                    available=self.controllers,
                    detail=f"{name} of the parent is empty, nothing to inherit",
                )
            self._files.write(cgroup / name, inherited)
            changed = True
        return changed

    def _build(self, hierarchy: V1Hierarchy, path: CgroupPath | None) -> bool:
        changed = False
        cgroup = hierarchy.mount_point
        for part in self._relative(path):
            cgroup = cgroup / part
            changed |= self._files.make_dir(cgroup)
            if "cpuset" in hierarchy.controllers:
                changed |= self._copy_cpuset(cgroup)
        return changed

    def _ensure(self, path: CgroupPath, limits: CgroupLimits | None) -> CgroupState:
        changed = False
        for hierarchy in self.managed:
            for attempt in range(_ENSURE_ATTEMPTS):
                try:
                    changed |= self._build(hierarchy, path)
                    break
                except FileNotFoundError as error:
                    if attempt == _ENSURE_ATTEMPTS - 1:
                        raise CgroupIOError(
                            path=self.directory(hierarchy, path),
                            action="create cgroup",
                            reason="a parent cgroup kept disappearing (concurrent removal)",
                        ) from error
        if limits is not None:
            changed |= self._apply_limits(path, limits)
        return self._observe(path, changed=changed)

    def _cpu_hierarchies(self) -> list[V1Hierarchy]:
        return [h for h in self.managed if h.controllers & LOG_COPIER_CONTROLLERS]

    def _ensure_log_copiers(self, realm: str) -> None:
        for hierarchy in self._cpu_hierarchies():
            self._build(hierarchy, log_copiers_path(realm))

    def _ensure_root(self, pids_max: int | None, create: bool) -> CgroupState | None:
        roots = [h.mount_point.joinpath(*self._root_parts) for h in self.managed]
        if not create and not any(self._files.exists(root) for root in roots):
            return None
        changed = False
        for hierarchy in self.managed:
            changed |= self._build(hierarchy, None)
        limits: dict[str, str] = {}
        pids = self._hierarchy_for("pids")
        if pids is not None:
            file = pids.mount_point.joinpath(*self._root_parts) / "pids.max"
            changed |= self._files.write_if_different(
                file, "max" if pids_max is None else str(pids_max)
            )
            limits["pids.max"] = self._files.read(file) or ""
        return CgroupState(
            path=self.root,
            version=self.version,
            subtree_controllers=tuple(sorted(self.controllers)),
            limits=limits,
            changed=changed,
        )

    # -- limits ------------------------------------------------------------------------------

    def _limit_dir(self, path: CgroupPath, controller: str, needed: bool) -> Path | None:
        hierarchy = self._hierarchy_for(controller)
        if hierarchy is None:
            if not needed:
                return None
            raise ControllerUnavailableError(
                path=Path(self.cgroup_path(path)),
                controllers=[controller],
                available=self.controllers,
                detail=f"no cgroup v1 hierarchy with {controller} is mounted",
            )
        cgroup = self.directory(hierarchy, path)
        if not self._files.exists(cgroup):
            raise CgroupIOError(
                path=cgroup, action="set limits on", reason="the cgroup does not exist"
            )
        return cgroup

    def _apply_limits(self, path: CgroupPath, limits: CgroupLimits) -> bool:
        changed = False
        page = os.sysconf("SC_PAGE_SIZE")
        memory = self._limit_dir(path, "memory", limits.memory_limited)
        if memory is not None:
            desired = "-1" if limits.memory_max_bytes is None else str(limits.memory_max_bytes)
            changed |= self._files.write_if_different(
                memory / "memory.limit_in_bytes",
                desired,
                same=lambda cur: _same_memory_limit(cur, desired, page=page),
            )
        cpu = self._limit_dir(path, "cpu", limits.cpu_limited)
        if cpu is not None:
            shares = CPU_SHARES_DEFAULT if limits.cpu_shares is None else limits.cpu_shares
            changed |= self._files.write_if_different(
                cpu / "cpu.shares", str(clamp_cpu_shares(shares))
            )
            changed |= self._write_cfs(cpu, limits)
        pids = self._limit_dir(path, "pids", limits.pids_limited)
        if pids is not None:
            desired_pids = "max" if limits.pids_max is None else str(limits.pids_max)
            changed |= self._files.write_if_different(pids / "pids.max", desired_pids)
        return changed

    def _write_cfs(self, cpu: Path, limits: CgroupLimits) -> bool:
        period = str(limits.cpu_period_us or CPU_PERIOD_DEFAULT_US)
        quota = "-1" if limits.cpu_quota_us is None else str(limits.cpu_quota_us)
        period_file, quota_file = cpu / "cpu.cfs_period_us", cpu / "cpu.cfs_quota_us"
        if (self._files.read(period_file), self._files.read(quota_file)) == (period, quota):
            return False
        # the kernel checks quota against period (and the parent's bandwidth) on each write,
        # so one order can fail where the other succeeds: try period first, then quota first
        try:
            self._files.write_if_different(period_file, period)
            self._files.write_if_different(quota_file, quota)
        except CgroupWriteError as error:
            if error.errno != errno_codes.EINVAL:
                raise
            self._files.write_if_different(quota_file, quota)
            self._files.write_if_different(period_file, period)
        return True

    def _set_limits(self, path: CgroupPath, limits: CgroupLimits) -> CgroupState:
        changed = self._apply_limits(path, limits)
        return self._observe(path, changed=changed)

    # -- observe -------------------------------------------------------------------------------

    def _observe(self, path: CgroupPath, *, changed: bool = False) -> CgroupState:
        holding: set[str] = set()
        limits: dict[str, str] = {}
        for hierarchy in self.managed:
            cgroup = self.directory(hierarchy, path)
            if not self._files.exists(cgroup):
                continue
            holding |= hierarchy.controllers & MANAGED_V1_CONTROLLERS
            for name in LIMIT_FILES_V1:
                if name.split(".", 1)[0] in hierarchy.controllers:
                    value = self._files.read(cgroup / name)
                    if value is not None:
                        limits[name] = value
        return CgroupState(
            path=self.cgroup_path(path),
            version=self.version,
            subtree_controllers=tuple(sorted(holding)),
            limits=limits,
            changed=changed,
        )

    def _inspect(self, path: CgroupPath) -> CgroupState | None:
        if not any(self._files.exists(self.directory(h, path)) for h in self.managed):
            return None
        return self._observe(path)

    # -- processes ---------------------------------------------------------------------------

    def _add_process(self, path: CgroupPath, pid: int) -> None:
        for hierarchy in self.managed:
            cgroup = self.directory(hierarchy, path)
            try:
                self._files.write(cgroup / "cgroup.procs", str(pid))
            except FileNotFoundError as error:
                raise CgroupIOError(
                    path=cgroup, action=f"move pid {pid} into", reason="the cgroup does not exist"
                ) from error
            except CgroupWriteError as error:
                if error.errno == errno_codes.ESRCH:
                    raise CgroupError(
                        f"cannot move pid {pid} into {cgroup}: no such process"
                    ) from error
                if error.errno == errno_codes.ENOSPC and "cpuset" in hierarchy.controllers:
                    raise ControllerUnavailableError(
                        path=cgroup,
                        controllers=["cpuset"],
                        available=self.controllers,
                        detail="cpuset.cpus or cpuset.mems is empty",
                    ) from error
                raise

    def _list_processes(self, path: CgroupPath, recursive: bool) -> tuple[int, ...]:
        pids: set[int] = set()
        for hierarchy in self.managed:
            cgroup = self.directory(hierarchy, path)
            dirs = self._files.subtree_deepest_first(cgroup) if recursive else [cgroup]
            pids.update(self._files.pids_in(d for d in dirs if self._files.exists(d)))
        return tuple(sorted(pids))

    def _read_stats(self, path: CgroupPath) -> CgroupStats:
        def read_int(controller: str, name: str) -> int | None:
            hierarchy = self._hierarchy_for(controller)
            if hierarchy is None:
                return None
            value = self._files.read(self.directory(hierarchy, path) / name)
            return int(value) if value is not None else None

        memory = self._hierarchy_for("memory")
        usage = read_int("memory", "memory.usage_in_bytes")
        inactive_file: int | None = None
        limit: int | None = None
        oom_kills: int | None = None
        if memory is not None:
            memory_dir = self.directory(memory, path)
            oom_kills = self._files.read_keyed(memory_dir / "memory.oom_control", "oom_kill")
            # total_: this cgroup and its descendants, as memory.usage_in_bytes counts them
            inactive_file = self._files.read_keyed(
                memory_dir / "memory.stat", "total_inactive_file"
            )
            limit = read_int("memory", "memory.limit_in_bytes")
            if limit is not None and limit >= _V1_UNLIMITED_THRESHOLD:
                limit = None
        return CgroupStats(
            memory_bytes=usage,
            cpu_usage_ns=read_int("cpuacct", "cpuacct.usage"),
            pids=read_int("pids", "pids.current"),
            oom_kills=oom_kills,
            memory_working_set_bytes=working_set(usage, inactive_file),
            memory_limit_bytes=limit,
        )

    def _pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]:
        hierarchy = self._hierarchy_for("pids")
        if hierarchy is None:
            return ()
        levels = [
            None,
            *(CgroupPath(path.parts[:depth]) for depth in range(1, len(path.parts) + 1)),
        ]
        found = (
            self._files.read_pids_count(
                self.root if level is None else self.cgroup_path(level),
                hierarchy.mount_point.joinpath(*self._relative(level)),
            )
            for level in levels
        )
        return tuple(count for count in found if count is not None)

    def _children(self, path: CgroupPath | None) -> tuple[str, ...]:
        names: set[str] = set()
        for mount in self._all_mounts():
            names.update(self._files.children(mount.joinpath(*self._relative(path))))
        return tuple(sorted(names))

    # -- removal -------------------------------------------------------------------------------

    def _all_mounts(self) -> list[Path]:
        return [*(h.mount_point for h in self.managed), *self.swept]

    def _freeze(self, relative: tuple[str, ...], state: str) -> bool:
        freezer = self._hierarchy_for("freezer")
        if freezer is None:
            return False
        state_file = freezer.mount_point.joinpath(*relative) / "freezer.state"
        if not self._files.exists(state_file):
            return False
        self._files.write(state_file, state)
        if state == "FROZEN":
            deadline = time.monotonic() + self.kill_timeout
            # FREEZING means some task has not stopped yet; killing works anyway, so the
            # wait is bounded and not an error
            while self._files.read(state_file) != "FROZEN" and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL_S)
        return True

    def _remove_relative(self, relative: tuple[str, ...]) -> tuple[list[Path], list[int]]:
        subtrees = {
            mount: self._files.subtree_deepest_first(mount.joinpath(*relative))
            for mount in self._all_mounts()
        }
        every_dir = [d for dirs in subtrees.values() for d in dirs]
        if not every_dir:
            return [], []
        where = Path("/".join(("", *relative)))
        victims = self._files.pids_in(every_dir)
        if victims:
            self._files.refuse_to_kill_self(victims, where=where)
            frozen = self._freeze(relative, "FROZEN")
            try:
                self._files.sigkill(victims)
            finally:
                if frozen:
                    self._freeze(relative, "THAWED")
            self._files.wait_until_empty(
                every_dir, timeout=self.kill_timeout, resignal=True, where=where
            )
        removed: list[Path] = []
        for dirs in subtrees.values():
            removed += self._files.remove_dirs(dirs, timeout=self.kill_timeout)
        return removed, victims

    def _remove(self, path: CgroupPath, prune_empty_parents: bool) -> CgroupRemoval:
        removed, killed = self._remove_relative(self._relative(path))
        if prune_empty_parents and path.parent is not None:
            parent_relative = self._relative(path.parent)
            for mount in self._all_mounts():
                removed += self._files.prune_empty(
                    mount.joinpath(*parent_relative), stop_at=mount.joinpath(*self._root_parts)
                )
        return CgroupRemoval(
            path=self.cgroup_path(path), removed=tuple(removed), killed=tuple(killed)
        )

    def _remove_root(self) -> CgroupRemoval:
        removed, killed = self._remove_relative(self._relative(None))
        return CgroupRemoval(path=self.root, removed=tuple(removed), killed=tuple(killed))
