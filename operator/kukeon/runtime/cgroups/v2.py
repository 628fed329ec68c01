"""The cgroup v2 (unified hierarchy) driver.

cgroup v2 has one tree, but a controller only reaches a cgroup if *every* ancestor enabled
it in its ``cgroup.subtree_control``: the child's ``cgroup.controllers`` is exactly its
parent's ``subtree_control``, and a limit file such as ``memory.max`` exists only where the
controller arrived. So the tree is built top-down, one level at a time: create the
directory, then enable the wanted controllers on it, before creating the next level.

Two kernel rules shape the rest:

- *no internal processes*: a non-root cgroup that holds processes cannot enable
  controllers for its children (EBUSY), and a cgroup that delegates cannot take processes.
  kukeon's levels down to the cell never hold processes (tasks sit in
  ``<cell>/<container>`` leaves, created by runc), and the error says so when they do.
- removal is ``cgroup.kill`` (kernel >= 5.14) on the top of the removed subtree, which kills
  every process below atomically, then ``rmdir`` leaf first. Older kernels get a freeze,
  SIGKILL of every listed pid, thaw, and a wait until the subtree is empty.

The delegated set is read back from ``cgroup.subtree_control``, never assumed: a host may
offer fewer controllers than asked (this machine's hybrid ``unified`` mount offers only
``hugetlb``), and that difference must show in ``status.subtreeControllers``.
"""

from __future__ import annotations

import asyncio
import errno as errno_codes
import os
from pathlib import Path

from kukeon.runtime.cgroups._common import CgroupFiles
from kukeon.runtime.cgroups.errors import (
    CgroupBusyError,
    CgroupError,
    CgroupIOError,
    CgroupWriteError,
    ControllerUnavailableError,
    NoInternalProcessesError,
)
from kukeon.runtime.cgroups.fs import CgroupFs, RealCgroupFs
from kukeon.runtime.cgroups.paths import (
    DEFAULT_ROOT,
    CgroupPath,
    log_copiers_path,
    normalize_root,
)
from kukeon.runtime.cgroups.records import (
    CPU_PERIOD_DEFAULT_US,
    CPU_WEIGHT_DEFAULT,
    RESOURCE_CONTROLLERS,
    V2_NESTING_RISK,
    CgroupLimits,
    CgroupNesting,
    CgroupRemoval,
    CgroupState,
    CgroupStats,
    Delegation,
    PidsCount,
    cpu_shares_to_weight,
    working_set,
)
from kukeon.runtime.hostthreads import run_on_host_thread

DEFAULT_FS_ROOT = Path("/sys/fs/cgroup")
LIMIT_FILES_V2 = ("memory.max", "cpu.weight", "cpu.max", "pids.max")
# a parent vanishing under a concurrent prune makes mkdir fail; the walk is retried this often
_ENSURE_ATTEMPTS = 5


def _same_bytes_limit(current: str, desired: str, *, page: int) -> bool:
    # the kernel stores byte limits in pages: 1000000 reads back as 999424
    if current == desired:
        return True
    if current == "max" or desired == "max":
        return False
    return int(current) == (int(desired) // page) * page


def _same_cpu_max(current: str, desired: str) -> bool:
    return current.split() == desired.split()


class CgroupV2Driver:
    """Manages ``<fs_root>/<root>/<realm>/...`` on a cgroup2 mount.

    ``fs_root`` is the cgroup2 mount point (``/sys/fs/cgroup`` on a unified host,
    ``/sys/fs/cgroup/unified`` on a hybrid one); ``root`` the kukeon subtree below it.
    """

    version = 2

    def __init__(
        self,
        *,
        fs_root: Path = DEFAULT_FS_ROOT,
        root: str = DEFAULT_ROOT,
        fs: CgroupFs | None = None,
        kill_timeout: float = 5.0,
        nsdelegate: bool = False,
    ) -> None:
        self.fs_root = fs_root
        self.nsdelegate = nsdelegate
        self._root_parts = normalize_root(root)
        self._files = CgroupFiles(fs if fs is not None else RealCgroupFs())
        self.kill_timeout = kill_timeout

    # -- paths -------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return "/" + "/".join(self._root_parts)

    @property
    def root_dir(self) -> Path:
        return self.fs_root.joinpath(*self._root_parts)

    def cgroup_path(self, path: CgroupPath) -> str:
        """The path inside the hierarchy: ``status.cgroupPath`` and OCI ``linux.cgroupsPath``."""
        return "/".join((self.root, *path.parts))

    def directory(self, path: CgroupPath) -> Path:
        return self.root_dir.joinpath(*path.parts)

    def _chain(self, path: CgroupPath) -> list[Path]:
        """Every level from the hierarchy root down to ``path``, root first."""
        chain = [self.fs_root]
        for part in (*self._root_parts, *path.parts):
            chain.append(chain[-1] / part)
        return chain

    def nesting(self) -> CgroupNesting:
        """Guarded when the cgroup2 mount carries ``nsdelegate`` (see :class:`CgroupNesting`)."""
        if self.nsdelegate:
            return CgroupNesting(version=self.version, guarded=True)
        return CgroupNesting(version=self.version, guarded=False, risk=V2_NESTING_RISK)

    # -- public async API ----------------------------------------------------------------

    async def offered_controllers(self) -> frozenset[str]:
        return await asyncio.to_thread(self._offered)

    async def ensure(
        self,
        path: CgroupPath,
        *,
        delegation: Delegation = Delegation.RESOURCES,
        limits: CgroupLimits | None = None,
    ) -> CgroupState:
        """Create ``path`` level by level with its delegation; apply ``limits`` when given.

        ``limits=None`` leaves the limit files alone; a :class:`CgroupLimits` sets all of them.
        Idempotent: a second identical call writes nothing and reports ``changed=False``.
        """
        return await run_on_host_thread(self._ensure, path, delegation, limits)

    async def set_limits(self, path: CgroupPath, limits: CgroupLimits) -> CgroupState:
        return await run_on_host_thread(self._set_limits, path, limits)

    async def ensure_root(self, *, pids_max: int | None) -> CgroupState:
        """The kukeon root, delegating the resource controllers, its ``pids.max``
        ``pids_max`` (None: ``max``) where the hierarchy offers pids: the ceiling of every
        realm together. Without pids there is nothing to limit, and nothing is refused."""
        state = await run_on_host_thread(self._ensure_root, pids_max, True)
        assert state is not None  # made when absent
        return state

    async def limit_existing_root(self, *, pids_max: int | None) -> CgroupState | None:
        """As :meth:`ensure_root` where the root is there; None (nothing made) where not."""
        return await run_on_host_thread(self._ensure_root, pids_max, False)

    async def inspect(self, path: CgroupPath) -> CgroupState | None:
        """The current state of ``path``, or ``None`` when it does not exist."""
        return await asyncio.to_thread(self._inspect, path)

    async def remove(self, path: CgroupPath, *, prune_empty_parents: bool = False) -> CgroupRemoval:
        """Kill every process below ``path``, then rmdir its subtree leaf first.

        With ``prune_empty_parents`` the now-empty ancestors go too, up to (not including)
        the kukeon root, stopping at the first one that still has children or processes.
        Removing an absent path is a no-op.
        """
        return await run_on_host_thread(self._remove, path, prune_empty_parents)

    async def remove_root(self) -> CgroupRemoval:
        """Remove the whole kukeon root (everything under it, then the root itself)."""
        return await run_on_host_thread(self._remove_root)

    async def children(self, path: CgroupPath | None = None) -> tuple[str, ...]:
        """Names of the child cgroups of ``path`` (of the kukeon root when None); none if absent."""
        directory = self.root_dir if path is None else self.directory(path)
        return await asyncio.to_thread(self._files.children, directory)

    async def add_process(self, path: CgroupPath, pid: int) -> None:
        await run_on_host_thread(self._add_process, path, pid)

    async def list_processes(self, path: CgroupPath, *, recursive: bool = True) -> tuple[int, ...]:
        return await asyncio.to_thread(self._list_processes, path, recursive)

    def log_copier_procs(self, realm: str) -> tuple[Path, ...]:
        """One hierarchy for every controller: a copier there is also one of the realm's
        pids (its keeper stays out) and its memory the realm's (see ``crilog``)."""
        return (self.directory(log_copiers_path(realm)) / "cgroup.procs",)

    async def ensure_log_copiers(self, realm: str) -> None:
        await self.ensure(log_copiers_path(realm), delegation=Delegation.NONE)

    async def read_stats(self, path: CgroupPath) -> CgroupStats:
        return await asyncio.to_thread(self._read_stats, path)

    async def pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]:
        return await asyncio.to_thread(self._pids_counts, path)

    def _pids_counts(self, path: CgroupPath) -> tuple[PidsCount, ...]:
        # The root and each level below it (the hierarchy's own root has no pids.max).
        levels = self._chain(path)[len(self._root_parts) :]
        names = [
            self.root,
            *(self.cgroup_path(CgroupPath(path.parts[:n])) for n in range(1, len(path.parts) + 1)),
        ]
        found = (
            self._files.read_pids_count(name, level)
            for name, level in zip(names, levels, strict=True)
        )
        return tuple(count for count in found if count is not None)

    # -- ensure ----------------------------------------------------------------------------

    def _offered(self) -> frozenset[str]:
        controllers_file = self.fs_root / "cgroup.controllers"
        if not self._files.exists(controllers_file):
            raise CgroupIOError(
                path=self.fs_root,
                action="use as a cgroup2 hierarchy",
                reason="no cgroup.controllers file (not a cgroup2 mount)",
            )
        return self._files.read_words(controllers_file)

    def _wanted(self, delegation: Delegation) -> frozenset[str]:
        offered = self._offered()
        if delegation is Delegation.ALL:
            return offered
        return offered & RESOURCE_CONTROLLERS

    def _enable(self, cgroup: Path, wanted: frozenset[str]) -> bool:
        """Enable on ``cgroup`` the wanted controllers it has; ``True`` if it wrote something."""
        available = self._files.read_words(cgroup / "cgroup.controllers")
        enabled = self._files.read_words(cgroup / "cgroup.subtree_control")
        missing = (wanted & available) - enabled
        if not missing:
            return False
        value = " ".join(f"+{name}" for name in sorted(missing))
        try:
            self._files.write(cgroup / "cgroup.subtree_control", value)
        except FileNotFoundError as error:
            if not self._files.exists(cgroup):
                raise  # the cgroup vanished (concurrent removal): the caller retries
            # The kernel's ENOENT here means "not in this cgroup's cgroup.controllers",
            # unless the cgroup was removed and made again meanwhile (a concurrent prune
            # and ensure); then the controllers are there now and the caller retries.
            available_now = self._files.read_words(cgroup / "cgroup.controllers")
            if missing <= available_now:
                raise
            raise ControllerUnavailableError(
                path=cgroup,
                controllers=missing,
                available=available_now,
                detail=f"the kernel refused {value!r} (ENOENT)",
            ) from error
        except CgroupWriteError as error:
            if error.errno == errno_codes.EBUSY:
                pids = self._files.read_pids(cgroup)
                if pids:
                    raise NoInternalProcessesError(
                        path=cgroup, controllers=missing, pids=pids
                    ) from error
            if error.errno == errno_codes.EINVAL:
                raise ControllerUnavailableError(
                    path=cgroup,
                    controllers=missing,
                    available=self._files.read_words(cgroup / "cgroup.controllers"),
                    detail=f"the kernel refused {value!r}: {error.reason}",
                ) from error
            raise
        return True

    def _ensure(
        self, path: CgroupPath, delegation: Delegation, limits: CgroupLimits | None
    ) -> CgroupState:
        wanted = self._wanted(delegation)
        # a leaf that will hold processes still needs its ancestors to delegate resources
        ancestors_wanted = (
            self._wanted(Delegation.RESOURCES) if delegation is Delegation.NONE else wanted
        )
        chain = self._chain(path)
        # each level with the controllers it must enable for its children
        levels = [(cgroup, ancestors_wanted) for cgroup in chain[:-1]]
        levels.append((chain[-1], frozenset() if delegation is Delegation.NONE else wanted))
        changed = False
        for attempt in range(_ENSURE_ATTEMPTS):
            try:
                changed |= self._build_chain(levels)
                if self._delegated_along(levels):
                    break
                # A level was removed and made again by someone else while this chain was
                # built: what it had enabled is gone, and the levels below got less.
                # Building again enables it anew; the last attempt reports what it got.
            except FileNotFoundError as error:
                if attempt == _ENSURE_ATTEMPTS - 1:
                    raise CgroupIOError(
                        path=Path(error.filename or self.directory(path)),
                        action="create cgroup",
                        reason="a parent cgroup kept disappearing (concurrent removal)",
                    ) from error
        if limits is not None:
            changed |= self._apply_limits(self.directory(path), limits)
        state = self._observe(path)
        return CgroupState(
            path=state.path,
            version=self.version,
            subtree_controllers=state.subtree_controllers,
            limits=state.limits,
            changed=changed,
        )

    def _build_chain(self, levels: list[tuple[Path, frozenset[str]]]) -> bool:
        changed = False
        for depth, (cgroup, asked) in enumerate(levels):
            if depth > 0:
                changed |= self._files.make_dir(cgroup)
            if asked:
                changed |= self._enable(cgroup, asked)
        return changed

    def _delegated_along(self, levels: list[tuple[Path, frozenset[str]]]) -> bool:
        """Whether every level of the chain enables what this ensure asked of it."""
        return all(
            asked <= self._files.read_words(cgroup / "cgroup.subtree_control")
            for cgroup, asked in levels
        )

    def _ensure_root(self, pids_max: int | None, create: bool) -> CgroupState | None:
        if not create and not self._files.exists(self.root_dir):
            return None
        wanted = self._wanted(Delegation.RESOURCES)
        levels = [(self.fs_root, wanted)]
        for part in self._root_parts:
            levels.append((levels[-1][0] / part, wanted))
        changed = False
        for attempt in range(_ENSURE_ATTEMPTS):
            try:
                changed |= self._build_chain(levels)
                break
            except FileNotFoundError as error:
                if attempt == _ENSURE_ATTEMPTS - 1:
                    raise CgroupIOError(
                        path=self.root_dir,
                        action="create cgroup",
                        reason="a parent cgroup kept disappearing (concurrent removal)",
                    ) from error
        limits: dict[str, str] = {}
        pids = self._limit_file(self.root_dir, "pids.max", "pids", needed=False)
        if pids is not None:
            changed |= self._files.write_if_different(
                pids, "max" if pids_max is None else str(pids_max)
            )
            limits["pids.max"] = self._files.read(pids) or ""
        return CgroupState(
            path=self.root,
            version=self.version,
            subtree_controllers=tuple(
                sorted(self._files.read_words(self.root_dir / "cgroup.subtree_control"))
            ),
            limits=limits,
            changed=changed,
        )

    # -- limits ----------------------------------------------------------------------------

    def _limit_file(self, cgroup: Path, name: str, controller: str, needed: bool) -> Path | None:
        file = cgroup / name
        if self._files.exists(file):
            return file
        if not needed:
            return None  # nothing to reset where the controller never arrived
        raise ControllerUnavailableError(
            path=cgroup,
            controllers=[controller],
            available=self._files.read_words(cgroup / "cgroup.controllers"),
            detail=f"{name} is missing: the parent does not delegate {controller}",
        )

    def _apply_limits(self, cgroup: Path, limits: CgroupLimits) -> bool:
        if not self._files.exists(cgroup):
            raise CgroupIOError(
                path=cgroup, action="set limits on", reason="the cgroup does not exist"
            )
        changed = False
        page = os.sysconf("SC_PAGE_SIZE")
        memory = self._limit_file(cgroup, "memory.max", "memory", limits.memory_limited)
        if memory is not None:
            desired = "max" if limits.memory_max_bytes is None else str(limits.memory_max_bytes)
            changed |= self._files.write_if_different(
                memory, desired, same=lambda cur: _same_bytes_limit(cur, desired, page=page)
            )
        weight = self._limit_file(cgroup, "cpu.weight", "cpu", limits.cpu_limited)
        if weight is not None:
            shares = limits.cpu_shares
            desired_weight = CPU_WEIGHT_DEFAULT if shares is None else cpu_shares_to_weight(shares)
            changed |= self._files.write_if_different(weight, str(desired_weight))
        cpu_max = self._limit_file(cgroup, "cpu.max", "cpu", limits.cpu_limited)
        if cpu_max is not None:
            period = limits.cpu_period_us or CPU_PERIOD_DEFAULT_US
            quota = "max" if limits.cpu_quota_us is None else str(limits.cpu_quota_us)
            desired_max = f"{quota} {period}"
            changed |= self._files.write_if_different(
                cpu_max, desired_max, same=lambda cur: _same_cpu_max(cur, desired_max)
            )
        pids = self._limit_file(cgroup, "pids.max", "pids", limits.pids_limited)
        if pids is not None:
            desired_pids = "max" if limits.pids_max is None else str(limits.pids_max)
            changed |= self._files.write_if_different(pids, desired_pids)
        return changed

    def _set_limits(self, path: CgroupPath, limits: CgroupLimits) -> CgroupState:
        changed = self._apply_limits(self.directory(path), limits)
        state = self._observe(path)
        return CgroupState(
            path=state.path,
            version=self.version,
            subtree_controllers=state.subtree_controllers,
            limits=state.limits,
            changed=changed,
        )

    # -- observe -----------------------------------------------------------------------------

    def _observe(self, path: CgroupPath) -> CgroupState:
        cgroup = self.directory(path)
        limits: dict[str, str] = {}
        for name in LIMIT_FILES_V2:
            value = self._files.read(cgroup / name)
            if value is not None:
                limits[name] = value
        delegated = self._files.read_words(cgroup / "cgroup.subtree_control")
        return CgroupState(
            path=self.cgroup_path(path),
            version=self.version,
            subtree_controllers=tuple(sorted(delegated)),
            limits=limits,
        )

    def _inspect(self, path: CgroupPath) -> CgroupState | None:
        if not self._files.exists(self.directory(path)):
            return None
        return self._observe(path)

    # -- processes ----------------------------------------------------------------------------

    def _add_process(self, path: CgroupPath, pid: int) -> None:
        cgroup = self.directory(path)
        procs = cgroup / "cgroup.procs"
        try:
            self._files.write(procs, str(pid))
        except FileNotFoundError as error:
            raise CgroupIOError(
                path=cgroup, action=f"move pid {pid} into", reason="the cgroup does not exist"
            ) from error
        except CgroupWriteError as error:
            if error.errno == errno_codes.EBUSY:
                delegated = " ".join(
                    sorted(self._files.read_words(cgroup / "cgroup.subtree_control"))
                )
                raise CgroupBusyError(
                    path=cgroup,
                    detail=f"cannot take pid {pid}: it delegates controllers ({delegated}) and "
                    "cgroup v2 keeps processes in leaf cgroups only",
                ) from error
            if error.errno == errno_codes.ESRCH:
                raise CgroupError(
                    f"cannot move pid {pid} into {cgroup}: no such process"
                ) from error
            raise

    def _list_processes(self, path: CgroupPath, recursive: bool) -> tuple[int, ...]:
        cgroup = self.directory(path)
        if not recursive:
            return tuple(sorted(self._files.read_pids(cgroup)))
        return tuple(self._files.pids_in(self._files.subtree_deepest_first(cgroup)))

    def _read_stats(self, path: CgroupPath) -> CgroupStats:
        cgroup = self.directory(path)
        memory = self._files.read(cgroup / "memory.current")
        pids = self._files.read(cgroup / "pids.current")
        usage_us = self._files.read_keyed(cgroup / "cpu.stat", "usage_usec")
        usage = int(memory) if memory is not None else None
        inactive_file = self._files.read_keyed(cgroup / "memory.stat", "inactive_file")
        limit = self._files.read(cgroup / "memory.max")
        return CgroupStats(
            memory_bytes=usage,
            cpu_usage_ns=usage_us * 1000 if usage_us is not None else None,
            pids=int(pids) if pids is not None else None,
            oom_kills=self._files.read_keyed(cgroup / "memory.events", "oom_kill"),
            memory_working_set_bytes=working_set(usage, inactive_file),
            memory_limit_bytes=int(limit) if limit is not None and limit != "max" else None,
        )

    # -- removal -------------------------------------------------------------------------------

    def _empty_subtree(self, top: Path, subtree: list[Path]) -> list[int]:
        victims = self._files.pids_in(subtree)
        if not victims:
            return []
        self._files.refuse_to_kill_self(victims, where=top)
        if self._files.exists(top / "cgroup.kill"):
            self._files.write(top / "cgroup.kill", "1")
            self._files.wait_until_empty(
                subtree, timeout=self.kill_timeout, resignal=False, where=top
            )
            return victims
        # no cgroup.kill: freeze so nothing forks between listing and killing
        freeze = top / "cgroup.freeze"
        frozen = self._files.exists(freeze)
        if frozen:
            self._files.write(freeze, "1")
        try:
            self._files.sigkill(victims)
        finally:
            if frozen:
                self._files.write(freeze, "0")
        self._files.wait_until_empty(subtree, timeout=self.kill_timeout, resignal=True, where=top)
        return victims

    def _remove_dir(self, top: Path) -> tuple[list[Path], list[int]]:
        subtree = self._files.subtree_deepest_first(top)
        if not subtree:
            return [], []
        killed = self._empty_subtree(top, subtree)
        removed = self._files.remove_dirs(subtree, timeout=self.kill_timeout)
        return removed, killed

    def _remove(self, path: CgroupPath, prune_empty_parents: bool) -> CgroupRemoval:
        target = self.directory(path)
        removed, killed = self._remove_dir(target)
        if prune_empty_parents:
            removed += self._files.prune_empty(target.parent, stop_at=self.root_dir)
        return CgroupRemoval(
            path=self.cgroup_path(path), removed=tuple(removed), killed=tuple(killed)
        )

    def _remove_root(self) -> CgroupRemoval:
        removed, killed = self._remove_dir(self.root_dir)
        return CgroupRemoval(path=self.root, removed=tuple(removed), killed=tuple(killed))
