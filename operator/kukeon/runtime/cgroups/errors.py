"""The ways cgroup work can fail, as typed values a controller can report in ``status``.

Every message names the cgroup directory (or file) involved and the missing piece, so
``status.message`` tells an operator what to fix (run as root, mount the hierarchy,
delegate a controller) instead of showing an errno. Every error derives from
:class:`CgroupError` so a controller can catch the family at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class CgroupError(Exception):
    """Base of every failure raised by ``kukeon.runtime.cgroups``."""


class InvalidCgroupPathError(CgroupError, ValueError):
    """A path component or the kukeon root cannot name a cgroup directory."""


class CgroupUnavailableError(CgroupError):
    """The host has no usable cgroup filesystem (nothing mounted, or not the expected kind)."""

    def __init__(self, *, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"host prerequisite missing: a mounted cgroup filesystem ({detail}); "
            "mount cgroup2 at /sys/fs/cgroup or the cgroup v1 controller hierarchies "
            "under it (systemd does this at boot)"
        )


class CgroupNotWritableError(CgroupError):
    """The cgroup filesystem refused a write for lack of privilege or a read-only mount."""

    def __init__(self, *, path: Path, action: str, reason: str) -> None:
        self.path = path
        self.action = action
        self.reason = reason
        super().__init__(
            f"cgroup filesystem not writable: cannot {action} {path}: {reason} "
            "(kukeond needs root and a read-write cgroup mount)"
        )


class ControllerUnavailableError(CgroupError):
    """A limit or a delegation needs a controller that is not available at ``path``."""

    def __init__(
        self,
        *,
        path: Path,
        controllers: Iterable[str],
        available: Iterable[str],
        detail: str = "",
    ) -> None:
        self.path = path
        self.controllers = tuple(sorted(controllers))
        self.available = tuple(sorted(available))
        offered = " ".join(self.available) or "(none)"
        suffix = f"; {detail}" if detail else ""
        super().__init__(
            f"cgroup controller(s) {' '.join(self.controllers)} not available at {path} "
            f"(available: {offered}){suffix}"
        )


class NoInternalProcessesError(CgroupError):
    """cgroup v2 refuses to delegate controllers from a cgroup that holds processes."""

    def __init__(self, *, path: Path, controllers: Iterable[str], pids: Iterable[int]) -> None:
        self.path = path
        self.controllers = tuple(sorted(controllers))
        self.pids = tuple(pids)
        shown = " ".join(str(pid) for pid in self.pids[:10])
        more = " ..." if len(self.pids) > 10 else ""
        super().__init__(
            f"cannot enable {' '.join(self.controllers)} in {path / 'cgroup.subtree_control'}: "
            f"the cgroup holds processes ({shown}{more}) and cgroup v2's no-internal-processes "
            "rule forbids a non-root cgroup with processes to delegate controllers; move them "
            "into a child cgroup first"
        )


class CgroupBusyError(CgroupError):
    """A cgroup could not be emptied or removed in time (processes survive, children appear)."""

    def __init__(self, *, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"cgroup {path} is busy: {detail}")


class CgroupWriteError(CgroupError):
    """The kernel rejected a value written to a cgroup interface file (``errno`` says why)."""

    def __init__(self, *, path: Path, value: str, reason: str, errno: int | None = None) -> None:
        self.path = path
        self.value = value
        self.reason = reason
        self.errno = errno
        super().__init__(f"cannot write {value!r} to {path}: {reason}")


class CgroupIOError(CgroupError):
    """Reading, creating or removing a cgroup failed for a reason other than privilege."""

    def __init__(self, *, path: Path, action: str, reason: str, errno: int | None = None) -> None:
        self.path = path
        self.action = action
        self.reason = reason
        self.errno = errno
        super().__init__(f"cannot {action} {path}: {reason}")
