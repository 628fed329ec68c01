"""Named network namespaces, bind-mounted as files so they outlive any process.

A cell's namespace is created before its root container and named by kukeon, so the cell
keeps its address across container restarts and CNI can be run against a stable path.
A namespace is made by a short-lived thread of kukeond's own: it unshares a network
namespace for itself (namespaces are per thread), pyroute2 bind-mounts it at its path (the
steps of ``ip netns add``), and the thread ends; the mount keeps the namespace. No process
is forked: forking next to gRPC's threads is unsafe (pyroute2's ``netns.create`` forks a
Python child), and an ``unshare --net`` holder cost a fork and two execs per cell. This
module adds idempotence and a configurable directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import os
import threading
from pathlib import Path

from kukeon.runtime.hostfiles import make_dirs
from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.idranges import IdRange
from kukeon.runtime.network.errors import HostPrerequisiteError, NetnsError
from kukeon.runtime.network.netlink import netns as pyroute2_netns
from kukeon.runtime.network.userns import (
    create_in_user_namespace,
    owned_by_its_userns,
    unbind,
    userns_path,
)

DEFAULT_NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
_DIRECTORY_SETUP = threading.Lock()


class NetnsManager:
    """Creates, finds and removes named network namespaces under ``directory``."""

    def __init__(self, *, directory: Path = DEFAULT_NETNS_DIR) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        if not name or "/" in name or name in {".", ".."} or "\0" in name:
            raise NetnsError(f"network namespace name {name!r} is not a plain file name")
        return self.directory / name

    async def exists(self, name: str) -> bool:
        return await asyncio.to_thread(_is_mounted_netns, self.path(name))

    async def create(self, name: str, *, id_range: IdRange | None = None) -> Path:
        """Create the namespace (a no-op when it already exists); return its path. With
        ``id_range``, inside a user namespace of its own mapping that range (``userns``)."""
        path = self.path(name)
        if id_range is None:
            await run_on_host_thread(self._create, path)
        else:
            await run_on_host_thread(self._create_owned, path, id_range)
        return path

    def userns_path(self, name: str) -> Path:
        """Where the user namespace owning namespace ``name`` is bound, if it has one."""
        return userns_path(self.path(name))

    def _create_owned(self, path: Path, id_range: IdRange) -> None:
        if _is_mounted_netns(path):
            if owned_by_its_userns(path):
                return
            # Made for the host's users (or its user namespace's file is gone): the cell's
            # containers could not join it from their user namespace.
            raise NetnsError(
                f"network namespace {path} is not owned by a user namespace of its own: the "
                "cell was made with hostUsers unset or true; delete the cell and create it again"
            )
        unbind(userns_path(path), _libc())  # left by a crash halfway
        if path.exists():
            path.unlink()
        make_dirs(self.directory)

        def bind_netns(target: str, pid: str) -> None:
            pyroute2_netns.attach(target, pid, libc=_libc())

        with _DIRECTORY_SETUP:
            create_in_user_namespace(path, id_range, _libc(), bind_netns)

    def holds(self, name: str, pid: int) -> bool | None:
        """Whether the namespace bound at ``name`` is the one process ``pid`` is in; None
        when ``pid`` is gone. A few stats: cheap enough for the event loop."""
        try:
            theirs = _identity(Path(f"/proc/{pid}/ns/net"))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        path = self.path(name)
        return _is_mounted_netns(path) and _identity(path) == theirs

    async def bind_from(self, name: str, pid: int) -> bool:
        """Make ``name`` hold the network namespace process ``pid`` is in: bound again when
        its file was unmounted, or put back over another namespace bound there since;
        True when anything changed. A running cell's tasks keep their namespace alive
        whatever happens to its file, and a new one there would leave them without their
        network (``kukeon.controllers.cellnetns``)."""
        return await run_on_host_thread(self._bind_from, self.path(name), pid)

    async def drop_unbound(self, name: str) -> bool:
        """Delete ``name``'s file when no namespace is bound on it (left by a crash between
        an unmount and the unlink, or between making the mount point and binding it);
        whether one was deleted. CNI plugins take a missing namespace as already torn down
        on DEL, but refuse a file that is not one ("unknown FS magic"), for ever."""

        def drop(path: Path) -> bool:
            if _is_mounted_netns(path):
                return False
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(drop, self.path(name))

    async def remove(self, name: str) -> bool:
        """Unmount and delete the namespace file; return whether one was there."""
        path = self.path(name)
        return await run_on_host_thread(self._remove, path)

    async def list(self) -> list[str]:
        def names() -> list[str]:
            try:
                return sorted(
                    entry.name for entry in self.directory.iterdir() if _is_mounted_netns(entry)
                )
            except FileNotFoundError:
                return []

        return await asyncio.to_thread(names)

    def _create(self, path: Path) -> None:
        if _is_mounted_netns(path):
            return
        if path.exists():
            # Left by a crash between creating the mount point and binding it.
            path.unlink()
        make_dirs(self.directory)  # its files are mode-0 mount points; nobody else needs it
        try:
            # Binding the first namespace also makes the directory a shared mount point,
            # bind-mounting it on itself when it is not one yet; two first creations at
            # once would both find it missing and stack two mounts.
            with _DIRECTORY_SETUP:
                _create_bound(path)
        except PermissionError as error:
            raise HostPrerequisiteError(
                piece="permission to create network namespaces (root or CAP_SYS_ADMIN)",
                package=None,
                detail=str(error),
            ) from error
        except OSError as error:
            if error.errno in {errno.EPERM, errno.EACCES}:
                raise HostPrerequisiteError(
                    piece="permission to create network namespaces (root or CAP_SYS_ADMIN)",
                    package=None,
                    detail=str(error),
                ) from error
            if error.errno == errno.EINVAL:
                raise HostPrerequisiteError(
                    piece="network namespace support in the kernel (CONFIG_NET_NS)",
                    package=None,
                    detail=str(error),
                ) from error
            raise NetnsError(f"cannot create network namespace {path}: {error}") from error
        if not _is_mounted_netns(path):
            raise NetnsError(f"network namespace {path} was created but is not mounted")

    def _bind_from(self, path: Path, pid: int) -> bool:
        try:
            wanted = _identity(Path(f"/proc/{pid}/ns/net"))
        except (FileNotFoundError, ProcessLookupError):
            return False  # it ended: nothing runs in a namespace to keep
        # Never a cell's: a pid ended and reused since its task was listed may be a host
        # process (the cell's attachment would then move links of the host's).
        if wanted == _identity(Path("/proc/self/ns/net")):
            raise NetnsError(f"pid {pid} is in the host's network namespace, not a cell's")
        if _is_mounted_netns(path):
            if _identity(path) == wanted:
                return False
            self._remove(path)
        elif path.exists():
            path.unlink()
        make_dirs(self.directory)
        try:
            with _DIRECTORY_SETUP:
                pyroute2_netns.attach(str(path), str(pid), libc=_libc())
        except OSError as error:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise NetnsError(
                f"cannot bind the network namespace of pid {pid} at {path}: {error}"
            ) from error
        if _identity(path) != wanted:  # the pid ended between the two
            self._remove(path)
            raise NetnsError(f"pid {pid} ended while its network namespace was bound")
        return True

    def _remove(self, path: Path) -> bool:
        unbind(userns_path(path), _libc())
        if not path.exists():
            return False
        try:
            pyroute2_netns.remove(str(path), libc=_libc())
        except FileNotFoundError:
            return False
        except OSError as error:
            raise NetnsError(f"cannot remove network namespace {path}: {error}") from error
        return True


def _create_bound(path: Path) -> None:
    """Create a network namespace bound at `path`, without forking and without moving any
    thread but a throwaway one into it.

    The thread unshares a namespace for itself only and ends once it is bound; a pool
    thread must never do it (it would stay in the cell's namespace, and so would the next
    netlink call it runs). ``/proc/thread-self`` names the thread's own namespace (the
    process's, ``/proc/self``, is the host's).
    """
    failures: list[BaseException] = []

    def in_a_new_namespace() -> None:
        try:
            if _libc().unshare(CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"unshare(CLONE_NEWNET): {os.strerror(code)}")
            pyroute2_netns.attach(str(path), "thread-self", libc=_libc())
        except BaseException as error:  # raised in the caller's thread
            failures.append(error)

    thread = threading.Thread(target=in_a_new_namespace, name="kukeon-netns-create")
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library this process runs with (pyroute2 would find its own by running
    ``ldconfig -p``: a fork, once)."""
    return ctypes.CDLL(None, use_errno=True)


def _is_mounted_netns(path: Path) -> bool:
    """A bound namespace file sits on nsfs, so its device differs from its directory's."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except FileNotFoundError:
        return False


def _identity(path: Path) -> tuple[int, int]:
    """A namespace's identity: its nsfs device and inode, whichever file names it."""
    found = os.stat(path)
    return found.st_dev, found.st_ino
