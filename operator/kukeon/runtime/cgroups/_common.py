"""Plumbing both drivers share: errno translation, subtree walks, emptying a cgroup.

Everything here is synchronous on purpose: the drivers run it in a worker thread, one
thread per public call (a host thread of ``runtime.hostthreads`` for what writes, as a
removal may wait long for the kernel; ``asyncio.to_thread`` for reads), so a whole ensure
or removal reads and writes its files in order without hopping back to the event loop
between syscalls.
"""

from __future__ import annotations

import errno as errno_codes
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from kukeon.runtime.cgroups.errors import (
    CgroupBusyError,
    CgroupError,
    CgroupIOError,
    CgroupNotWritableError,
    CgroupWriteError,
)
from kukeon.runtime.cgroups.fs import CgroupFs
from kukeon.runtime.cgroups.records import PidsCount

_PERMISSION_ERRNOS = {errno_codes.EACCES, errno_codes.EPERM, errno_codes.EROFS}
POLL_INTERVAL_S = 0.01


def _reason(error: OSError) -> str:
    if error.errno is not None:
        return f"{os.strerror(error.errno)} ({errno_codes.errorcode.get(error.errno, error.errno)})"
    return str(error)


def io_error(error: OSError, *, path: Path, action: str) -> CgroupError:
    if error.errno in _PERMISSION_ERRNOS:
        return CgroupNotWritableError(path=path, action=action, reason=_reason(error))
    return CgroupIOError(path=path, action=action, reason=_reason(error), errno=error.errno)


class CgroupFiles:
    """Reads and writes through a :class:`CgroupFs`, turning errnos into typed errors."""

    def __init__(self, fs: CgroupFs) -> None:
        self.fs = fs

    def exists(self, path: Path) -> bool:
        return self.fs.exists(path)

    def read(self, path: Path) -> str | None:
        """The file's content stripped, or ``None`` when it does not exist."""
        try:
            return self.fs.read_text(path).strip()
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno_codes.ENODEV:
                # the cgroup was removed under us (another removal pruning the same
                # parents); its open files answer ENODEV until the kernel drops them
                return None
            raise io_error(error, path=path, action="read") from error

    def read_keyed(self, path: Path, key: str) -> int | None:
        """The value of ``key`` in a flat-keyed file (``memory.events``, ``cpu.stat``...)."""
        text = self.read(path)
        if text is None:
            return None
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
        return None

    def read_pids_count(self, cgroup: str, directory: Path) -> PidsCount | None:
        """The pids counters of the cgroup in ``directory`` (None: no pids controller there,
        or the cgroup is gone)."""
        current = self.read(directory / "pids.current")
        limit = self.read(directory / "pids.max")
        if current is None or limit is None or not current.isdigit():
            return None
        peak = self.read(directory / "pids.peak")
        return PidsCount(
            cgroup=cgroup,
            limit=int(limit) if limit.isdigit() else None,
            current=int(current),
            peak=int(peak) if peak is not None and peak.isdigit() else None,
            refused=self.read_keyed(directory / "pids.events", "max") or 0,
        )

    def read_words(self, path: Path) -> frozenset[str]:
        return frozenset((self.read(path) or "").split())

    def read_pids(self, cgroup: Path) -> list[int]:
        text = self.read(cgroup / "cgroup.procs") or ""
        return [int(line) for line in text.split()]

    def write(self, path: Path, value: str) -> None:
        """Write one value; ``FileNotFoundError`` passes through (the caller knows its meaning)."""
        try:
            self.fs.write_text(path, value)
        except FileNotFoundError:
            raise
        except OSError as error:
            if error.errno in _PERMISSION_ERRNOS:
                raise CgroupNotWritableError(
                    path=path, action=f"write {value!r} to", reason=_reason(error)
                ) from error
            raise CgroupWriteError(
                path=path, value=value, reason=_reason(error), errno=error.errno
            ) from error

    def write_if_different(
        self, path: Path, value: str, *, same: Callable[[str], bool] | None = None
    ) -> bool:
        """Write only when the content differs (``same`` compares kernel-normalised forms)."""
        current = self.read(path)
        if current is not None and (same(current) if same is not None else current == value):
            return False
        try:
            self.write(path, value)
        except FileNotFoundError as error:
            raise CgroupIOError(
                path=path,
                action=f"write {value!r} to",
                reason="the file is gone (cgroup removed or controller withdrawn meanwhile)",
                errno=errno_codes.ENOENT,
            ) from error
        return True

    def make_dir(self, path: Path) -> bool:
        """Create one cgroup (``False`` if it existed); a gone parent raises FileNotFoundError."""
        try:
            self.fs.mkdir(path)
        except FileExistsError:
            return False
        except FileNotFoundError:
            raise
        except OSError as error:
            raise io_error(error, path=path, action="create cgroup") from error
        return True

    def children(self, directory: Path) -> tuple[str, ...]:
        """Names of the child cgroups of ``directory``, sorted; none when it does not exist."""
        try:
            return tuple(sorted(self.fs.subdirectories(directory)))
        except FileNotFoundError:
            return ()
        except OSError as error:
            raise io_error(error, path=directory, action="list") from error

    def subtree_deepest_first(self, top: Path) -> list[Path]:
        """``top`` and every cgroup below it, children before their parent; empty if absent."""
        found: list[Path] = []

        def visit(directory: Path) -> None:
            try:
                children = self.fs.subdirectories(directory)
            except FileNotFoundError:
                return
            except OSError as error:
                raise io_error(error, path=directory, action="list") from error
            for child in children:
                visit(directory / child)
            found.append(directory)

        visit(top)
        return found

    def pids_in(self, cgroups: Iterable[Path]) -> list[int]:
        pids: set[int] = set()
        for cgroup in cgroups:
            pids.update(self.read_pids(cgroup))
        return sorted(pids)

    def refuse_to_kill_self(self, pids: Iterable[int], *, where: Path) -> None:
        if os.getpid() in set(pids):
            raise CgroupBusyError(
                path=where,
                detail=f"refusing to kill the calling process (pid {os.getpid()}) sitting in it",
            )

    def sigkill(self, pids: Iterable[int]) -> None:
        for pid in pids:
            try:
                self.fs.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except OSError as error:
                raise CgroupIOError(
                    path=Path(f"/proc/{pid}"), action="SIGKILL", reason=_reason(error)
                ) from error

    def wait_until_empty(
        self,
        cgroups: Sequence[Path],
        *,
        timeout: float,
        resignal: bool,
        where: Path,
    ) -> None:
        """Poll until no listed cgroup holds a process; ``resignal`` SIGKILLs stragglers each round.

        Resignalling catches children forked between the listing and the first kill, which
        matters when the kernel has no atomic ``cgroup.kill``.
        """
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids_in(cgroups)
            if not pids:
                return
            if time.monotonic() > deadline:
                raise CgroupBusyError(
                    path=where,
                    detail=f"processes {pids[:10]} still present {timeout:g}s after SIGKILL",
                )
            if resignal:
                self.refuse_to_kill_self(pids, where=where)
                self.sigkill(pids)
            time.sleep(POLL_INTERVAL_S)

    def remove_dirs(self, cgroups: Sequence[Path], *, timeout: float) -> list[Path]:
        """rmdir each cgroup in order (deepest first); EBUSY is retried while tasks exit."""
        removed: list[Path] = []
        deadline = time.monotonic() + timeout
        for cgroup in cgroups:
            while True:
                try:
                    self.fs.rmdir(cgroup)
                except FileNotFoundError:
                    break  # someone else removed it: the goal is reached
                except OSError as error:
                    if error.errno == errno_codes.EBUSY and time.monotonic() < deadline:
                        time.sleep(POLL_INTERVAL_S)
                        continue
                    if error.errno == errno_codes.EBUSY:
                        raise CgroupBusyError(
                            path=cgroup,
                            detail="rmdir keeps failing with EBUSY (processes or child cgroups "
                            f"remain after {timeout:g}s)",
                        ) from error
                    raise io_error(error, path=cgroup, action="remove cgroup") from error
                removed.append(cgroup)
                break
        return removed

    def prune_empty(self, start: Path, *, stop_at: Path) -> list[Path]:
        """rmdir ``start`` and its ancestors below ``stop_at`` (excluded) while they are empty."""
        removed: list[Path] = []
        current = start
        while current != stop_at and stop_at in current.parents:
            try:
                if self.fs.subdirectories(current) or self.read_pids(current):
                    break
                self.fs.rmdir(current)
            except FileNotFoundError:
                pass
            except OSError as error:
                if error.errno in {errno_codes.EBUSY, errno_codes.ENOTEMPTY}:
                    break  # a sibling or a process arrived meanwhile: it stays
                raise io_error(error, path=current, action="remove cgroup") from error
            else:
                removed.append(current)
            current = current.parent
        return removed
