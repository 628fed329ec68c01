"""Bind sources under ``allowedHostPaths``, opened without following a tenant's links.

Admission compares a bind source with kukeond's ``allowedHostPaths`` as written: it cannot
see the node's files. A tenant whose container binds its allowed directory read-write
writes there as root, a symbolic link included (``ln -s / /data/up``); a second bind
naming ``<allowed>/up/etc`` is under the directory as written, and runc, resolving the
path on the host as root, mounted the host's ``/etc`` read-write into the tenant's
container. Checking the path before runc mounts it is a race the tenant can win (it swaps
a directory for a link meanwhile, and a task is created again at every restart).

So kukeond opens such a source itself: the allowed directory as the admin configured it
(links above it are the admin's and are followed), then each component below it with
``O_PATH | O_NOFOLLOW``, refusing a link (or ``..``); it binds what it opened at a path of
its own (``/proc/self/fd/N``, so what is mounted is what was checked), and the container's
spec names that path, which no tenant can change (``pin``). It binds again before each
task is created (the tenant may have replaced the directory since) and unmounts with the
cell (``unpin_cell``). The pins of a cell lie in
``<state>/binds/<realm>/<space>/<stack>/<cell>/<container>/<n>``; nothing here ever walks
into a pin, so a removal never touches a tenant's files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kukeon.runtime.hostfiles import PRIVATE_DIR_MODE, make_dirs

BINDS_DIR: Final = "binds"
"""In the state directory: the pinned bind sources of every cell."""
REALM_COMPONENT: Final = "{realm}"
"""An allowed directory's component that stands for each realm's own name."""
MS_BIND: Final = 0x1000
MS_REC: Final = 0x4000
MNT_DETACH: Final = 0x2
PROC = Path("/proc")
"""Where kukeond's and the host's (pid 1's) mount namespaces are looked at."""
_UNMOUNTS_MAX: Final = 16
"""Mounts stacked on one pin that an unpin takes off (one, unless something raced it)."""

_libc = ctypes.CDLL(None, use_errno=True)


class BindSourceRefusedError(Exception):
    """A bind source under an allowed directory that goes through a symbolic link (or
    ``..``) below it, or that cannot be opened there; the message names the path."""


@dataclass(frozen=True, slots=True)
class Pin:
    """One bind volume of a container, whose source kukeond opens and binds at ``staging``."""

    source: str
    """The volume's source as written."""
    directory: str
    """The allowed directory it lies in: links are followed up to it, none below it."""
    staging: Path
    """Where kukeond binds it; the container's spec names this path."""


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def allowed_directory(source: str, roots: Iterable[str]) -> str | None:
    """The allowed directory ``source`` lies in, or None when it lies in none of ``roots``.

    A ``{realm}`` component matches any name (a bind of another realm's directory is an
    admin's, but its tenants may have planted links there just the same); of two that hold
    the source the broader one is taken, since a tenant binding it writes everywhere below.
    """
    parts = _parts(source)
    found: list[str] | None = None
    for root in roots:
        wanted = _parts(root)
        if len(wanted) > len(parts):
            continue
        given = parts[: len(wanted)]
        matches = all(
            want in (REALM_COMPONENT, part) for want, part in zip(wanted, given, strict=True)
        )
        if matches and (found is None or len(wanted) < len(found)):
            found = given
    return None if found is None else "/" + "/".join(found)


def pins_of(sources: Sequence[str | None], roots: Sequence[str], directory: Path) -> dict[int, Pin]:
    """The pin of each bind source (by its volume's position) under one of ``roots``;
    ``directory`` is the container's own (``binds_directory``)."""
    found: dict[int, Pin] = {}
    for position, source in enumerate(sources):
        if source is None or not source.startswith("/"):
            continue
        allowed = allowed_directory(source, roots)
        if allowed is not None:
            found[position] = Pin(source, allowed, directory / str(position))
    return found


def binds_directory(state_dir: Path, key: Sequence[str], container: str | None = None) -> Path:
    """Where the pins of a cell (or of one of its containers) lie."""
    cell = state_dir.joinpath(BINDS_DIR, *key)
    return cell if container is None else cell / container


def _open_below(directory: str, below: Sequence[str]) -> int:
    """An ``O_PATH`` descriptor of ``directory``/``below``, no link followed below it."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, name in enumerate(below, start=1):
            here = "/".join([directory.rstrip("/"), *below[:depth]])
            if name == "..":
                raise BindSourceRefusedError(f"{here}: '..' below the allowed directory")
            try:
                opened = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as error:
                raise BindSourceRefusedError(f"{here}: {os.strerror(error.errno or 0)}") from None
            os.close(fd)
            fd = opened
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                raise BindSourceRefusedError(
                    f"{here} is a symbolic link below the allowed directory {directory}: a "
                    "bind source is followed there by no link (one a container left in a "
                    "directory it binds would lead anywhere on the host)"
                )
            if depth < len(below) and not stat.S_ISDIR(mode):
                raise BindSourceRefusedError(f"{here} is not a directory")
        return fd
    except BaseException:
        os.close(fd)
        raise


def unpin(staging: Path) -> None:
    """Unmount a pin and remove its mount point (blocking). Never enters it: a mount point
    that stays mounted is left, and its removal then fails harmlessly."""
    for _ in range(_UNMOUNTS_MAX):
        if _libc.umount2(str(staging).encode(), MNT_DETACH) != 0:
            break  # EINVAL: not a mount point (any more); ENOENT: not there
    try:
        info = staging.lstat()
    except FileNotFoundError:
        return
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(info.st_mode):
            staging.rmdir()
        else:
            staging.unlink()


def pin(item: Pin) -> None:
    """Open ``item.source`` below its allowed directory and bind it at ``item.staging``,
    replacing an earlier pin there (blocking). Raises `BindSourceRefusedError`."""
    below = _parts(item.source)[len(_parts(item.directory)) :]
    try:
        fd = _open_below(item.directory, below)
    except FileNotFoundError:
        raise BindSourceRefusedError(
            f"{item.directory}: no such directory where kukeond runs (it opens the allowed "
            "directory itself: in a container, mount it there at the same path)"
        ) from None
    except NotADirectoryError:
        raise BindSourceRefusedError(f"{item.directory}: not a directory") from None
    try:
        _mount_point(item.staging, directory=stat.S_ISDIR(os.fstat(fd).st_mode))
        source = f"/proc/self/fd/{fd}".encode()
        if _libc.mount(source, str(item.staging).encode(), None, MS_BIND | MS_REC, None) != 0:
            code = ctypes.get_errno()
            unpin(item.staging)
            raise BindSourceRefusedError(
                f"{item.source}: cannot bind it at {item.staging}: {os.strerror(code)}"
            )
        if not _seen_by_the_host(item.staging):
            unpin(item.staging)
            raise BindSourceRefusedError(
                f"{item.source}: kukeond's bind of it at {item.staging} does not reach the "
                "host, where runc mounts it: kukeond runs in a mount namespace of its own "
                "whose state directory is not mounted with shared propagation (docs/install.md)"
            )
    finally:
        os.close(fd)


def _seen_by_the_host(staging: Path) -> bool:
    """Whether the host's mount namespace (pid 1's: kukeond runs in the host's PID
    namespace) sees the pin at ``staging``. kukeond in a container whose state directory is
    mounted without shared propagation binds in its own namespace only, and runc would
    bind the empty mount point instead. True where it cannot tell (pid 1 is not its to
    look at: no host PID namespace)."""
    try:
        if (PROC / "self/ns/mnt").stat().st_ino == (PROC / "1/ns/mnt").stat().st_ino:
            return True
        mine, hosts = os.stat(staging), os.stat(f"{PROC}/1/root{staging}")
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return (mine.st_dev, mine.st_ino) == (hosts.st_dev, hosts.st_ino)


def _mount_point(staging: Path, *, directory: bool) -> None:
    """A fresh mount point of the source's kind at ``staging`` (an earlier pin removed)."""
    unpin(staging)
    try:
        make_dirs(staging.parent, PRIVATE_DIR_MODE)
        if directory:
            staging.mkdir(mode=PRIVATE_DIR_MODE)
        else:
            os.close(os.open(staging, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except OSError as error:
        raise BindSourceRefusedError(f"cannot make the mount point {staging}: {error}") from None


def pin_container(directory: Path, pins: Iterable[Pin]) -> None:
    """Bind each of a container's pins again, and unpin what ``directory`` holds besides
    (a volume the spec no longer has) (blocking)."""
    wanted = {item.staging.name: item for item in pins}
    for name in _entries(directory):
        if name not in wanted:
            unpin(directory / name)
    for item in wanted.values():
        pin(item)


def unpin_cell(directory: Path) -> None:
    """Unpin every container's binds of a cell and remove its directory (blocking)."""
    for container in _entries(directory):
        for name in _entries(directory / container):
            unpin(directory / container / name)
        with contextlib.suppress(OSError):
            (directory / container).rmdir()
    with contextlib.suppress(OSError):
        directory.rmdir()


def unpin_scope(state_dir: Path, scope: Sequence[str]) -> None:
    """Unpin whatever is left of the cells of a realm, space or stack (``scope``: one to
    three names) and remove its directories, level by level, never entering a pin."""
    levels = 4 - len(scope)  # below the scope: cells at this depth
    top = binds_directory(state_dir, scope)

    def remove(directory: Path, depth: int) -> None:
        if depth == levels:
            unpin_cell(directory)
            return
        for name in _entries(directory):
            remove(directory / name, depth + 1)
        with contextlib.suppress(OSError):
            directory.rmdir()

    remove(top, 0)


def _entries(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise
