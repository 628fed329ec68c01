"""An image's rootfs shifted to a user-namespace range: the remapped snapshot.

runc 1.1 (and containerd 1.6's overlay snapshotter) cannot make idmapped mounts, so a
container in a user namespace needs a rootfs whose files the host sees owned by the range's
ids: in the container, id 0 is the range's base on the host, and a file the image owns as 0
must be owned by that base or the container's root is a stranger to its own files. This is
containerd 1.6's own answer (``WithRemappedSnapshot``, ``ctr run --remap-labels``): prepare
an active snapshot on the image's top chain id, mount it, shift every file's uid and gid by
the range's base, commit it under a name keyed by the chain id and the range, and prepare
each container's rootfs on that committed parent. Every cell of a realm on a node shares
its range, so they share the remapped snapshot too; the first one pays for the copy (the
overlay copies up every file it changes, so the snapshot is a full copy of the image).

The shift is idempotent, so a walk interrupted and started again (a retried pass) or a
hard link met twice (the overlay breaks hard links on copy-up) is right: an id inside the
range's 0..size-1 becomes base + id, an id already in the range is kept, and any other id
(an image file owned by an id the range does not map) becomes the range's nobody (65534),
never a host id outside the range, which may be another realm's or a host account's.
chown(2) clears set-user-id and set-group-id bits, so they are put back. Symlinks are
shifted with lchown and never followed.

Nothing keeps the remapped snapshot but the containers prepared on it (and, while one is
made, the caller's lease): when the last of them is deleted, containerd's garbage collector
removes it, as it does the ones ctr makes; the next cell pays for the copy again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from kukeon.processes import run_program
from kukeon.runtime.containerd.errors import AlreadyExistsError, ContainerdError
from kukeon.runtime.hostfiles import PRIVATE_DIR_MODE, make_dirs
from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.idranges import IdRange

if TYPE_CHECKING:
    from kukeon.runtime.containerd.snapshots import Mount, SnapshotService

log = logging.getLogger(__name__)

LABEL_REMAPPED_FROM: Final = "kukeon.io/remapped-from"
"""On a remapped snapshot: the chain id it was shifted from."""
LABEL_REMAPPED_RANGE: Final = "kukeon.io/remapped-range"
"""On a remapped snapshot: the range, ``base-last``."""
NOBODY: Final = 65534


@dataclass(frozen=True, slots=True)
class Remap:
    """A container's rootfs shifted to ``idrange``; ``scratch`` holds the temporary mount."""

    idrange: IdRange
    scratch: Path


class RemapError(Exception):
    """The image's rootfs could not be shifted (mount or unmount failed, a file refused)."""


def remapped_name(parent: str, idrange: IdRange) -> str:
    """The committed snapshot of ``parent`` shifted to ``idrange``."""
    return f"{parent} userns {idrange.base}-{idrange.size}"


def shifted(value: int, idrange: IdRange) -> int:
    """The host id an image file's id ``value`` becomes (idempotent)."""
    if 0 <= value < idrange.size:
        return idrange.base + value
    if idrange.base <= value <= idrange.last:
        return value
    return idrange.base + NOBODY


def _shift_one(path: str, idrange: IdRange) -> None:
    info = os.lstat(path)
    uid, gid = shifted(info.st_uid, idrange), shifted(info.st_gid, idrange)
    if (uid, gid) == (info.st_uid, info.st_gid):
        return
    os.lchown(path, uid, gid)
    special = stat.S_IMODE(info.st_mode) & (stat.S_ISUID | stat.S_ISGID)
    if special and not stat.S_ISLNK(info.st_mode):
        os.chmod(path, stat.S_IMODE(info.st_mode))  # chown(2) cleared them


def shift_tree(root: Path, idrange: IdRange) -> int:
    """Shift the owner of ``root`` and everything under it (one filesystem); the count.

    Walked with a stack of its own, as deep as the image nests: Python 3.11's ``os.walk``
    recurses once a level, so an image nesting ~1,000 directories raised RecursionError and
    its cell's every pass failed with it; and ``os.walk`` passes over a directory it cannot
    list, which would have left its files unshifted without a word. A file that cannot be
    shifted is a RemapError naming it (a path longer than the host's ``PATH_MAX``).
    """
    count = 0
    device = os.lstat(root).st_dev
    _shift_one(str(root), idrange)
    directories = [str(root)]
    path = str(root)
    try:
        while directories:
            with os.scandir(path := directories.pop()) as entries:
                listed = list(entries)
            for entry in listed:
                _shift_one(path := entry.path, idrange)
                count += 1
                # Never into another filesystem mounted below (none in a snapshot; a guard).
                if entry.is_dir(follow_symlinks=False) and os.lstat(path).st_dev == device:
                    directories.append(path)
    except OSError as error:
        raise RemapError(_unshiftable(root, path, error)) from error
    return count


def _unshiftable(root: Path, path: str, error: OSError) -> str:
    """Why the image could not be shifted at ``path`` (a long one shown by its ends)."""
    relative = os.path.relpath(path, root)
    inside = "/" if relative == "." else f"/{relative}"
    shown = inside if len(inside) <= 120 else f"{inside[:60]}...{inside[-40:]}"
    depth = inside.count("/")
    return (
        f"the image's file {shown} ({depth} directories deep) could not be shifted to the "
        f"user namespace's ids: {error.strerror or error}"
    )


def _mount_argv(mount: Mount, target: Path) -> list[str]:
    options = ",".join(mount.options)
    argv = ["mount", "-t", mount.type, mount.source, str(target)]
    if options:
        argv[1:1] = ["-o", options]
    return argv


async def _shift_mounts(mounts: Sequence[Mount], idrange: IdRange, scratch: Path) -> int:
    if len(mounts) != 1:
        raise RemapError(f"a snapshot of {len(mounts)} mounts; one (overlay or bind) expected")
    await asyncio.to_thread(make_dirs, scratch, PRIVATE_DIR_MODE)
    target = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="remap-", dir=scratch))
    try:
        done = await run_program(_mount_argv(mounts[0], target))
        if done.returncode != 0:
            raise RemapError(f"mounting the snapshot failed: {done.stderr.decode().strip()}")
        try:
            return await run_on_host_thread(shift_tree, target, idrange)
        finally:
            undone = await run_program(["umount", str(target)])
            if undone.returncode != 0:
                log.error("unmounting %s failed: %s", target, undone.stderr.decode().strip())
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(target.rmdir)


async def ensure_remapped(
    snapshots: SnapshotService, parent: str, idrange: IdRange, *, lease: str, scratch: Path
) -> str:
    """The committed snapshot of ``parent`` shifted to ``idrange``, made if missing.

    Run inside the lease that then prepares the container's rootfs on it (the name is
    returned as that parent), so containerd's collector cannot take a fresh one before.
    ``scratch`` is a host directory for the temporary mount point.
    """
    name = remapped_name(parent, idrange)
    if await snapshots.exists(name):
        return name
    key = f"kukeon-remap-{uuid.uuid4().hex[:12]} {name}"
    mounts = await snapshots.prepare(key, parent=parent, lease=lease)
    try:
        files = await _shift_mounts(mounts, idrange, scratch)
        labels = {LABEL_REMAPPED_FROM: parent, LABEL_REMAPPED_RANGE: str(idrange)}
        try:
            await snapshots.commit(name=name, key=key, labels=labels, lease=lease)
        except AlreadyExistsError:
            await snapshots.remove(key)  # another container's pass made it first
        else:
            log.info("shifted %d files of %s to the ids %s", files, parent, idrange)
    except BaseException:
        with contextlib.suppress(ContainerdError):
            await snapshots.remove(key)
        raise
    return name
