"""A cgroup v2 filesystem on a temporary directory, with the kernel's rules enforced.

This host's cgroup2 mount offers only ``hugetlb``, so the v2 driver's handling of
``cpu memory io pids`` is tested here, against a fake that follows the kernel (see
Documentation/admin-guide/cgroup-v2.rst and kernel/cgroup/cgroup.c) rather than the
driver's expectations:

- a child's ``cgroup.controllers`` is its parent's ``cgroup.subtree_control``;
- ``+ctrl`` in ``cgroup.subtree_control`` needs ``ctrl`` in the cgroup's own
  ``cgroup.controllers`` (ENOENT otherwise, EINVAL for an unknown name);
- no internal processes: a non-root cgroup holding processes cannot enable controllers
  (EBUSY), and a non-root cgroup that delegates cannot take processes (EBUSY);
- ``-ctrl`` fails (EBUSY) while a child still enables ``ctrl`` for its own children;
- a controller's interface files (``memory.max``, ``cpu.weight``, ...) exist in a cgroup
  only while its parent enables that controller, and appear/disappear with it;
- interface files cannot be created, only written; read-only files refuse writes (EACCES);
  values are validated and normalised as the kernel does (``memory.max`` page-rounded);
- ``rmdir`` fails with EBUSY while the cgroup has child cgroups or processes, the root
  cannot be removed, and ``cgroup.kill``/``cgroup.freeze`` do not exist at the root.

Processes are fake: :meth:`FakeCgroupFs.spawn` creates one in a cgroup, ``kill`` with
SIGKILL (or ``cgroup.kill``) makes it disappear. Every mutating operation is appended to
:attr:`FakeCgroupFs.operations` so tests can check ordering.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import threading
from collections.abc import Iterable
from pathlib import Path

# the kernel lists controllers in this order
KERNEL_ORDER = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")
PAGE_SIZE = 4096

# controller -> {interface file: initial content, None when read-only marker}
_CONTROLLER_FILES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.weight": "100", "cpu.weight.nice": "0", "cpu.max": "max 100000"},
    "memory": {
        "memory.max": "max",
        "memory.high": "max",
        "memory.low": "0",
        "memory.min": "0",
        "memory.current": "0",
        "memory.swap.max": "max",
    },
    "io": {"io.max": "", "io.weight": "default 100", "io.stat": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": ""},
    "hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.current": "0"},
    "rdma": {"rdma.max": ""},
    "misc": {"misc.max": ""},
}
_READ_ONLY = {
    "cgroup.controllers",
    "cgroup.events",
    "cgroup.stat",
    "cpu.stat",
    "memory.current",
    "pids.current",
    "io.stat",
    "cpuset.cpus.effective",
    "hugetlb.2MB.current",
}
_FIRST_FAKE_PID = 5_000_000  # above any real pid_max: never a real process


def _oserror(code: int, path: Path) -> OSError:
    cls: type[OSError] = OSError
    if code == errno.ENOENT:
        cls = FileNotFoundError
    elif code == errno.EEXIST:
        cls = FileExistsError
    elif code in {errno.EACCES, errno.EPERM}:
        cls = PermissionError
    elif code == errno.ESRCH:
        cls = ProcessLookupError
    return cls(code, os.strerror(code), str(path))


def _ordered(names: Iterable[str]) -> str:
    chosen = set(names)
    return " ".join(name for name in KERNEL_ORDER if name in chosen)


class FakeCgroupFs:
    """Implements ``kukeon.runtime.cgroups.fs.CgroupFs`` with cgroup v2 semantics."""

    def __init__(
        self,
        root: Path,
        *,
        offered: Iterable[str],
        has_cgroup_kill: bool = True,
        has_freeze: bool = True,
        read_only: bool = False,
    ) -> None:
        self.root = root
        self.has_cgroup_kill = has_cgroup_kill
        self.has_freeze = has_freeze
        self.read_only = read_only
        self.operations: list[tuple[str, str]] = []
        self.killed: list[int] = []
        self.signals: list[tuple[int, int]] = []
        self._where: dict[int, Path] = {}
        # the drivers call from worker threads; each kernel syscall is atomic, so is each call
        self._lock = threading.RLock()
        self._pids = itertools.count(_FIRST_FAKE_PID)
        offered = set(offered)
        unknown = offered - set(KERNEL_ORDER)
        if unknown:
            raise ValueError(f"unknown controllers {unknown}")
        root.mkdir(parents=True, exist_ok=True)
        self._put(root / "cgroup.controllers", _ordered(offered))
        self._put(root / "cgroup.subtree_control", "")
        self._put(root / "cgroup.procs", "")
        self._put(root / "cgroup.threads", "")
        self._put(root / "cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0")
        self._put(root / "cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0")

    # -- helpers for tests ------------------------------------------------------------------

    def spawn(self, cgroup: Path) -> int:
        """A new fake process in ``cgroup`` (placed as the kernel would place a fork's child)."""
        with self._lock:
            pid = next(self._pids)
            self._where[pid] = cgroup
            self._sync_procs(cgroup)
            return pid

    def pids_of(self, cgroup: Path) -> list[int]:
        return sorted(pid for pid, where in self._where.items() if where == cgroup)

    def alive(self, pid: int) -> bool:
        return pid in self._where

    def relative(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.root)) if path != self.root else "/"

    # -- CgroupFs ------------------------------------------------------------------------------

    def read_text(self, path: Path) -> str:
        with self._lock:
            return path.read_text(encoding="utf-8")

    def exists(self, path: Path) -> bool:
        with self._lock:
            return os.path.lexists(path)

    def subdirectories(self, path: Path) -> list[str]:
        with self._lock:
            if not path.is_dir():
                raise _oserror(errno.ENOENT, path)
            return sorted(entry.name for entry in path.iterdir() if entry.is_dir())

    def kill(self, pid: int, sig: int) -> None:
        with self._lock:
            if pid not in self._where:
                raise _oserror(errno.ESRCH, Path(f"/proc/{pid}"))
            self.signals.append((pid, sig))
            if sig == signal.SIGKILL:
                self._reap(pid)

    def mkdir(self, path: Path) -> None:
        with self._lock:
            self._check_writable(path)
            parent = path.parent
            if not self._is_cgroup(parent):
                raise _oserror(errno.ENOENT, path)
            if os.path.lexists(path):
                raise _oserror(errno.EEXIST, path)
            path.mkdir()
            controllers = self._words(parent / "cgroup.subtree_control")
            self._put(path / "cgroup.controllers", _ordered(controllers))
            self._put(path / "cgroup.subtree_control", "")
            self._put(path / "cgroup.procs", "")
            self._put(path / "cgroup.threads", "")
            self._put(path / "cgroup.type", "domain")
            self._put(path / "cgroup.events", "populated 0\nfrozen 0")
            self._put(path / "cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0")
            self._put(path / "cgroup.max.depth", "max")
            self._put(path / "cgroup.max.descendants", "max")
            self._put(path / "cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0")
            if self.has_cgroup_kill:
                self._put(path / "cgroup.kill", "")
            if self.has_freeze:
                self._put(path / "cgroup.freeze", "0")
            for controller in controllers:
                self._add_interface_files(path, controller)
            self.operations.append(("mkdir", self.relative(path)))

    def rmdir(self, path: Path) -> None:
        with self._lock:
            self._check_writable(path)
            if path == self.root:
                raise _oserror(errno.EBUSY, path)
            if not self._is_cgroup(path):
                raise _oserror(errno.ENOENT, path)
            if self.subdirectories(path) or self._populated(path):
                raise _oserror(errno.EBUSY, path)
            for entry in path.iterdir():
                entry.unlink()
            path.rmdir()
            self.operations.append(("rmdir", self.relative(path)))

    def write_text(self, path: Path, data: str) -> None:
        with self._lock:
            self._check_writable(path)
            cgroup, name = path.parent, path.name
            if not self._is_cgroup(cgroup) or not path.is_file():
                # cgroupfs never creates files on write
                raise _oserror(errno.ENOENT, path)
            if name in _READ_ONLY:
                raise _oserror(errno.EACCES, path)
            value = data.strip()
            handler = {
                "cgroup.subtree_control": self._write_subtree_control,
                "cgroup.procs": self._write_procs,
                "cgroup.kill": self._write_kill,
                "cgroup.freeze": self._write_freeze,
                "memory.max": self._write_bytes_or_max,
                "memory.high": self._write_bytes_or_max,
                "pids.max": self._write_count_or_max,
                "cpu.weight": self._write_cpu_weight,
                "cpu.max": self._write_cpu_max,
            }.get(name)
            if handler is None:
                self._put(path, value)
            else:
                handler(cgroup, path, value)
            self.operations.append(("write", f"{self.relative(path)}={value}"))

    # -- rules -------------------------------------------------------------------------------

    def _write_subtree_control(self, cgroup: Path, path: Path, value: str) -> None:
        enable: set[str] = set()
        disable: set[str] = set()
        for token in value.split():
            sign, name = token[:1], token[1:]
            if sign not in {"+", "-"} or name not in KERNEL_ORDER:
                raise _oserror(errno.EINVAL, path)
            (enable if sign == "+" else disable).add(name)
            (disable if sign == "+" else enable).discard(name)
        available = self._words(cgroup / "cgroup.controllers")
        if enable - available:
            raise _oserror(errno.ENOENT, path)
        current = self._words(path)
        newly = enable - current
        if newly and cgroup != self.root and self.pids_of(cgroup):
            raise _oserror(errno.EBUSY, path)  # no internal processes
        children = [cgroup / child for child in self.subdirectories(cgroup)]
        for child in children:
            if disable & self._words(child / "cgroup.subtree_control"):
                raise _oserror(errno.EBUSY, path)
        updated = (current | enable) - disable
        self._put(path, _ordered(updated))
        for child in children:
            self._put(child / "cgroup.controllers", _ordered(updated))
            for controller in newly:
                self._add_interface_files(child, controller)
            for controller in disable & current:
                for file in _CONTROLLER_FILES[controller]:
                    (child / file).unlink(missing_ok=True)

    def _write_procs(self, cgroup: Path, path: Path, value: str) -> None:
        try:
            pid = int(value)
        except ValueError:
            raise _oserror(errno.EINVAL, path) from None
        if pid not in self._where:
            raise _oserror(errno.ESRCH, path)
        if cgroup != self.root and self._words(cgroup / "cgroup.subtree_control"):
            raise _oserror(errno.EBUSY, path)  # processes live in leaves only
        previous = self._where[pid]
        self._where[pid] = cgroup
        self._sync_procs(previous)
        self._sync_procs(cgroup)

    def _write_kill(self, cgroup: Path, path: Path, value: str) -> None:
        if value != "1":
            raise _oserror(errno.EINVAL, path)
        for pid, where in list(self._where.items()):
            if where == cgroup or cgroup in where.parents:
                self.signals.append((pid, signal.SIGKILL))
                self._reap(pid)

    def _write_freeze(self, cgroup: Path, path: Path, value: str) -> None:
        if value not in {"0", "1"}:
            raise _oserror(errno.EINVAL, path)
        self._put(path, value)
        populated = "1" if self._populated(cgroup) else "0"
        self._put(cgroup / "cgroup.events", f"populated {populated}\nfrozen {value}")

    def _write_bytes_or_max(self, cgroup: Path, path: Path, value: str) -> None:
        if value == "max":
            self._put(path, value)
            return
        if not value.isdigit():
            raise _oserror(errno.EINVAL, path)
        self._put(path, str(int(value) // PAGE_SIZE * PAGE_SIZE))

    def _write_count_or_max(self, cgroup: Path, path: Path, value: str) -> None:
        if value != "max" and not value.isdigit():
            raise _oserror(errno.EINVAL, path)
        self._put(path, value)

    def _write_cpu_weight(self, cgroup: Path, path: Path, value: str) -> None:
        if not value.isdigit():
            raise _oserror(errno.EINVAL, path)
        if not 1 <= int(value) <= 10_000:
            raise _oserror(errno.ERANGE, path)
        self._put(path, value)

    def _write_cpu_max(self, cgroup: Path, path: Path, value: str) -> None:
        words = value.split()
        if not 1 <= len(words) <= 2:
            raise _oserror(errno.EINVAL, path)
        quota = words[0]
        period = words[1] if len(words) == 2 else self._words_list(path)[1]
        if not period.isdigit() or not 1000 <= int(period) <= 1_000_000:
            raise _oserror(errno.EINVAL, path)
        if quota != "max" and (not quota.isdigit() or int(quota) < 1000):
            raise _oserror(errno.EINVAL, path)
        self._put(path, f"{quota} {period}")

    # -- internals -----------------------------------------------------------------------------

    def _check_writable(self, path: Path) -> None:
        if self.read_only:
            raise _oserror(errno.EROFS, path)

    def _is_cgroup(self, path: Path) -> bool:
        return (path / "cgroup.procs").is_file()

    def _put(self, path: Path, value: str) -> None:
        path.write_text(value + "\n" if value else "", encoding="utf-8")

    def _words(self, path: Path) -> set[str]:
        return set(path.read_text(encoding="utf-8").split())

    def _words_list(self, path: Path) -> list[str]:
        return path.read_text(encoding="utf-8").split()

    def _add_interface_files(self, cgroup: Path, controller: str) -> None:
        for file, initial in _CONTROLLER_FILES[controller].items():
            if not (cgroup / file).exists():
                self._put(cgroup / file, initial)

    def _populated(self, cgroup: Path) -> bool:
        return any(where == cgroup or cgroup in where.parents for where in self._where.values())

    def _reap(self, pid: int) -> None:
        cgroup = self._where.pop(pid)
        self.killed.append(pid)
        self._sync_procs(cgroup)

    def _sync_procs(self, cgroup: Path) -> None:
        if not self._is_cgroup(cgroup):
            return
        self._put(cgroup / "cgroup.procs", "\n".join(str(p) for p in self.pids_of(cgroup)))
        level = cgroup
        while level != self.root and self._is_cgroup(level):
            events = level / "cgroup.events"
            frozen = (
                "1"
                if (level / "cgroup.freeze").is_file()
                and self._words(level / "cgroup.freeze") == {"1"}
                else "0"
            )
            populated = "1" if self._populated(level) else "0"
            self._put(events, f"populated {populated}\nfrozen {frozen}")
            if (level / "pids.current").is_file():
                count = sum(
                    1 for where in self._where.values() if where == level or level in where.parents
                )
                self._put(level / "pids.current", str(count))
            level = level.parent
