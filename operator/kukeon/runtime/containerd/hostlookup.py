"""What the runtime spec needs to know about this host, read from the host.

Device nodes (for ``devices`` and for privileged containers), the hard rlimits kukeond
(and so containerd's shim and runc) runs under, and the capability bounding set. The spec
builder never reads the host itself: its caller looks these up and hands them over in a
:class:`~.spec.SpecContext`.

Every function here BLOCKS (``os.stat``, ``os.walk('/dev')``, ``/proc`` reads,
``getrlimit``): from async code call them through ``asyncio.to_thread``, or once at start,
never inside a reconcile on the event loop. The one exception is
:func:`own_bounding_capabilities`, cached: it reads ``/proc/self/status`` at its first call
only (call it at start), and the :class:`~.spec.SpecContext` default uses it.
"""

from __future__ import annotations

import functools
import os
import resource
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from kukeon.runtime.containerd.capabilities import CAPABILITY_NUMBERS

RLIM_INFINITY: Final = 2**64 - 1
"""The runtime spec's "unlimited" (``RLIM_INFINITY`` as an unsigned 64-bit number)."""

RLIMIT_NAMES: Final = (
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
)
"""The resource limits of Linux, as the runtime spec names them."""


@dataclass(frozen=True, slots=True)
class HostDevice:
    """A device node on the host, as the OCI spec needs to recreate it in a container."""

    path: str
    type: str
    """``c`` (character), ``b`` (block) or ``p`` (FIFO)."""
    major: int
    minor: int
    file_mode: int
    uid: int = 0
    gid: int = 0


def inspect_host_device(path: str) -> HostDevice | None:
    """The device node at ``path`` (symlinks followed), or ``None`` when it is not one.

    Blocking (``os.stat``).
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    elif stat.S_ISFIFO(info.st_mode):
        kind = "p"
    else:
        return None
    major, minor = (os.major(info.st_rdev), os.minor(info.st_rdev)) if kind != "p" else (0, 0)
    return HostDevice(
        path=path,
        type=kind,
        major=major,
        minor=minor,
        file_mode=stat.S_IMODE(info.st_mode),
        uid=info.st_uid,
        gid=info.st_gid,
    )


# Directories under /dev that belong to the container's own mounts, never copied from the host.
_SKIPPED_DEV_DIRS: Final = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def list_host_devices(root: str = "/dev") -> list[HostDevice]:
    """Every device node under /dev, for privileged containers (as Docker does).

    Blocking (walks /dev and stats every node in it).
    """
    found: list[HostDevice] = []
    for directory, subdirs, files in os.walk(root):
        if directory == root:
            subdirs[:] = [d for d in subdirs if d not in _SKIPPED_DEV_DIRS]
        for name in sorted(files):
            path = os.path.join(directory, name)
            if path == os.path.join(root, "console") or os.path.islink(path):
                continue
            device = inspect_host_device(path)
            if device is not None and device.type != "p":
                found.append(device)
    return found


def current_hard_rlimits(names: Iterable[str] = RLIMIT_NAMES) -> dict[str, int]:
    """The hard limits of this process (which containerd's shim and runc inherit).

    Blocking only in the sense of a system call per limit: read it once at start.
    """
    limits: dict[str, int] = {}
    for name in names:
        number = getattr(resource, name, None)
        if number is None:
            continue
        _, hard = resource.getrlimit(number)
        limits[name] = RLIM_INFINITY if hard == resource.RLIM_INFINITY else hard
    return limits


def read_bounding_capabilities(status_path: str = "/proc/self/status") -> frozenset[str] | None:
    """The capability bounding set of a process (this one by default: give containerd's
    ``/proc/<pid>/status`` when it is known), or ``None`` when it cannot be read.

    Blocking (reads ``status_path``).
    """
    try:
        with open(status_path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("CapBnd:"):
            try:
                mask = int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
            return frozenset(
                name for name, number in CAPABILITY_NUMBERS.items() if mask >> number & 1
            )
    return None


@functools.cache
def own_bounding_capabilities() -> frozenset[str] | None:
    """This process's capability bounding set, read from ``/proc/self/status`` once.

    Blocking at the first call only (kukeond's start, or the first
    :class:`~.spec.SpecContext` built without ``available_capabilities``); every later call
    returns the same answer without touching the host. A process's bounding set can only
    shrink (kukeond never drops from it), so the first answer stays right.
    """
    return read_bounding_capabilities()
