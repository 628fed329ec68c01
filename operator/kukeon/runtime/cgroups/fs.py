"""The only seam between the drivers and the host: cgroupfs files, directories and signals.

cgroupfs is not an ordinary filesystem: a value must reach the kernel in one ``write``
(a short write of ``+cpu +memory`` split in two would apply half), files cannot be
created, only written, and directories are removed with ``rmdir`` even though they list
files. The drivers express every host effect through :class:`CgroupFs` so that unit tests
can swap in a fake that enforces the same kernel rules on a temporary directory
(``tests/unit/runtime/fake_cgroupfs.py``). Signals go through the same seam because,
for a fake filesystem, the processes it lists are fake too.

Methods raise plain ``OSError`` (with the kernel's errno); the drivers translate those into
the typed errors of :mod:`kukeon.runtime.cgroups.errors`, where the context is known.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class CgroupFs(Protocol):
    def read_text(self, path: Path) -> str: ...

    def write_text(self, path: Path, data: str) -> None:
        """Write ``data`` to an existing interface file in a single ``write`` call."""

    def exists(self, path: Path) -> bool: ...

    def mkdir(self, path: Path) -> None:
        """Create one cgroup (``FileExistsError`` if present, ``FileNotFoundError`` sans parent)."""

    def rmdir(self, path: Path) -> None: ...

    def subdirectories(self, path: Path) -> list[str]:
        """Names of the child cgroups of ``path`` (``FileNotFoundError`` if it is gone)."""

    def kill(self, pid: int, signal: int) -> None:
        """Send ``signal`` to ``pid``; ``ProcessLookupError`` when it is already gone."""


class RealCgroupFs:
    """The kernel's cgroupfs, through plain system calls."""

    def read_text(self, path: Path) -> str:
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    def write_text(self, path: Path, data: str) -> None:
        encoded = data.encode()
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, encoded)
        finally:
            os.close(fd)
        if written != len(encoded):
            raise OSError(f"short write to {path}: {written} of {len(encoded)} bytes")

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def subdirectories(self, path: Path) -> list[str]:
        with os.scandir(path) as entries:
            return sorted(entry.name for entry in entries if entry.is_dir(follow_symlinks=False))

    def kill(self, pid: int, signal: int) -> None:
        os.kill(pid, signal)
