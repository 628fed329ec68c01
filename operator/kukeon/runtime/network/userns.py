"""A cell's network namespace owned by a user namespace of its own (`hostUsers: false`).

runc 1.1.5 joins a container's namespaces in one order for `exec`: its user namespace
first, then the others. A network namespace made by kukeond in the host's user namespace
cannot be joined from inside a child user namespace (setns(2) needs CAP_SYS_ADMIN in the
namespace's owner), so every `kukectl exec` and exec probe of such a cell would fail, and
sysfs could not be mounted in it either (its mounter must own the network namespace). So,
as Kubernetes' pod sandbox does, the cell's user namespace is made first and its network
namespace inside it: a short-lived `unshare --user --net` child makes both, kukeond writes
its id mappings (the realm's range, written by a root process of the parent namespace, as
newuidmap would), binds both namespaces at files (the network one where every cell's is,
the user one beside it in ``.userns/``) and kills it. The containers join both by path.

A process cannot enter a new user namespace while it has other threads, so this is the one
namespace kukeond makes by running a program (fork and exec, never a bare fork) instead of
unsharing on a thread of its own (``netns``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from kukeon.runtime.idranges import IdRange
from kukeon.runtime.network.errors import NetnsError

USERNS_DIR: Final = ".userns"
"""Beside the network namespace files: the user namespace of each that has one."""
NS_GET_USERNS: Final = 0xB701
"""ioctl(2) on a namespace file: a descriptor of the user namespace that owns it."""
MS_BIND: Final = 0x1000
MNT_DETACH: Final = 0x2
_READY_SECONDS: Final = 5.0


def userns_path(netns_path: Path) -> Path:
    return netns_path.parent / USERNS_DIR / netns_path.name


def identity(path: Path | str) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


def owner_of(netns_path: Path) -> tuple[int, int]:
    """The identity of the user namespace that owns the network namespace at the path."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)
    try:
        found = os.fstat(owner)
    finally:
        os.close(owner)
    return found.st_dev, found.st_ino


def owned_by_its_userns(netns_path: Path) -> bool:
    """Whether the network namespace at the path is owned by the user namespace bound beside
    it (False when either is missing)."""
    users = userns_path(netns_path)
    try:
        return owner_of(netns_path) == identity(users) and _is_mounted(users)
    except OSError:
        return False


def _is_mounted(path: Path) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except FileNotFoundError:
        return False


def _wait_unshared(child: subprocess.Popen[bytes]) -> None:
    """Until the child is in its new namespaces (unshare(2) done), or it failed."""
    mine = identity("/proc/self/ns/user")
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
            raise NetnsError(f"unshare --user --net exited {child.returncode}: {stderr.strip()}")
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if identity(f"/proc/{child.pid}/ns/user") != mine:
                return
        time.sleep(0.002)
    raise NetnsError(f"unshare --user --net did not unshare within {_READY_SECONDS} s")


def bind_namespace(source: str, target: Path, libc: ctypes.CDLL) -> None:
    """Bind the namespace file ``source`` at ``target`` (made as an empty, mode-0 file)."""
    target.parent.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)
    os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    if libc.mount(source.encode(), str(target).encode(), b"none", MS_BIND, None) != 0:
        code = ctypes.get_errno()
        os.unlink(target)
        raise NetnsError(f"cannot bind {source} at {target}: {os.strerror(code)}")


def unbind(target: Path, libc: ctypes.CDLL) -> bool:
    """Unmount and delete a namespace file; whether one was there."""
    if not target.exists():
        return False
    libc.umount2(str(target).encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)
    return True


def create_in_user_namespace(
    netns_path: Path, id_range: IdRange, libc: ctypes.CDLL, bind_netns: Callable[[str, str], None]
) -> None:
    """Make a user namespace mapping ``id_range`` and a network namespace it owns; bind the
    network one at ``netns_path`` (with ``bind_netns(path, pid)``: the netns module's own
    binding, which also readies its directory) and the user one beside it. Blocking."""
    child = subprocess.Popen(
        ["unshare", "--user", "--net", "--", "sleep", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_unshared(child)
        mapping = f"0 {id_range.base} {id_range.size}\n"
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{child.pid}/{name}").write_text(mapping)
        bind_netns(str(netns_path), str(child.pid))
        bind_namespace(f"/proc/{child.pid}/ns/user", userns_path(netns_path), libc)
    finally:
        child.kill()
        child.wait()
        if child.stderr is not None:
            child.stderr.close()
