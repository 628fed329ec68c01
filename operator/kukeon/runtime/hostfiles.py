"""Modes of the files and directories kukeond writes on the host, and helpers that keep them.

kukeond runs as root and what it writes holds containers' output, cells' configuration,
staged secrets, network leases and etcd's data: none of it is for the host's other users.
So, all owned by root:

- directories ``0750`` (``0700`` where secrets or keys live), the API socket's directory
  ``0750`` with the socket's group (``kukeon``) so that group reaches the socket;
- log files ``0640``; state records (subnets, attachments, image archives) ``0600``;
  an attachable container's log file (its terminal's raw bytes, no CRI records) carries
  the sticky bit besides (:data:`TERMINAL_LOG_MARK`);
- kukeond's own umask is ``0027`` (``PROCESS_UMASK``), so whatever the programs it starts
  create (the CNI plugins' IPAM leases, etcd's files) is no wider either.

The exceptions are files a container's non-root user must read through a bind mount: a
cell's rendered ``hosts`` and ``hostname`` (``0644``), and the tty wrapper's state
directory, owned by the container's user. They sit in ``0750`` directories, so on the
host other users still cannot reach them. CNI conflists (``0644`` in ``0755`` directories
such as ``/etc/cni/net.d``) are host configuration shared with other CNI users and hold
nothing secret.

Directories are created with their mode at every level (``Path.mkdir(parents=True)``
gives the mode to the last one only), and files before the first writer that would create
them with its own umask (the containerd shim's loggers). What older versions left wider is
narrowed at start by :func:`narrow_tree`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from kukeon.fileio import write_atomically

log = logging.getLogger(__name__)

DIR_MODE = 0o750
PRIVATE_DIR_MODE = 0o700
LOG_FILE_MODE = 0o640
PRIVATE_FILE_MODE = 0o600
CONTAINER_READABLE_FILE_MODE = 0o644
"""A file bind-mounted into containers whose user may be anyone (``/etc/hosts``)."""
SHARED_CONFIG_DIR_MODE = 0o755
"""A host configuration directory other programs read too (``/etc/cni/net.d``)."""
TERMINAL_LOG_MARK = stat.S_ISVTX
"""The mode bit of a log file that holds a terminal's raw output, not CRI records: how a
reader tells a terminal's line shaped as a record (``<time> stderr P text``) from a record.
Its writer sets it before the first byte (``create_log_file``, the logger's open and
rotation) and a container cannot reach the file, so its output cannot forge it; a mode
survives the renames of a rotation and of ``--previous``, and kukeond's restarts. Linux
gives the sticky bit no meaning on a regular file."""
PROCESS_UMASK = 0o027
NARROWED_BITS = 0o027
"""What :func:`narrow_tree` removes: group write and every permission of others."""


def make_dirs(path: Path, mode: int = DIR_MODE) -> None:
    """``mkdir -p`` giving every directory it creates ``mode``; existing ones are kept as are.

    The mode is set after ``mkdir``, so it is exact whatever the umask, on the directory
    opened without following a link: in a directory another account may write, the new
    one could be renamed away and a link to any directory put in its place meanwhile
    (``OSError`` then).
    """
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # made meanwhile by another thread; its creator set its mode
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(descriptor, mode)
        finally:
            os.close(descriptor)


def create_log_file(path: Path, *, terminal: bool = False) -> None:
    """Create ``path`` (``0640``, its directories ``0750``) unless it exists; narrow a wider one.
    ``terminal``: it is to hold a terminal's raw output, marked so (``TERMINAL_LOG_MARK``);
    otherwise the mark is taken off (an empty file of an instance that had a terminal).

    Called before a task starts: the shim's logger then appends to the file as it is,
    instead of creating it with the shim's umask.
    """
    make_dirs(path.parent)
    mark = TERMINAL_LOG_MARK if terminal else 0
    descriptor = os.open(
        path,
        os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW,
        LOG_FILE_MODE | mark,
    )
    try:
        current = stat.S_IMODE(os.fstat(descriptor).st_mode)
        if current != (wanted := (current & LOG_FILE_MODE) | mark):
            os.fchmod(descriptor, wanted)
    finally:
        os.close(descriptor)


def is_terminal_log(descriptor: int) -> bool:
    """Whether the open log file holds a terminal's raw output (``TERMINAL_LOG_MARK``): its
    lines are the container's bytes as they are, whatever they look like."""
    return bool(os.fstat(descriptor).st_mode & TERMINAL_LOG_MARK)


def write_private_text(path: Path, text: str, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it, with ``mode``."""
    make_dirs(path.parent)
    write_atomically(path, text, mode=mode)


def narrow(path: Path, *, bits: int = NARROWED_BITS) -> bool:
    """Remove ``bits`` from the mode of ``path`` (not following a symlink); whether it changed."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return False
    current = stat.S_IMODE(info.st_mode)
    if not current & bits:
        return False
    os.chmod(path, current & ~bits, follow_symlinks=False)
    return True


def narrow_tree(root: Path, *, keep: Callable[[Path], bool] = lambda _relative: False) -> int:
    """Narrow ``root`` and the directories and regular files under it; how many changed.

    What an older kukeon (or an operator's ``mkdir``) left wider than today's modes loses
    group write and every permission of others. ``keep`` is asked about each path relative
    to ``root``: a kept file is left alone, a kept directory with everything in it. Symlinks
    are not followed, sockets and FIFOs keep their modes (the API socket's is its access
    control), and nothing on another filesystem is entered (a mount point under ``root``).
    Blocking: run it in a thread.
    """
    changed = 0
    try:
        device = root.lstat().st_dev
    except FileNotFoundError:
        return 0

    def visit(path: Path) -> None:
        nonlocal changed
        try:
            if narrow(path):
                changed += 1
        except OSError as error:
            log.warning("cannot narrow the mode of %s: %s", path, error.strerror)

    visit(root)
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        entered: list[str] = []
        for name in subdirectories:
            path = here / name
            with contextlib.suppress(OSError):
                info = path.lstat()
                if not stat.S_ISDIR(info.st_mode) or info.st_dev != device:
                    continue
                if keep(path.relative_to(root)):
                    continue
                visit(path)
                entered.append(name)
        subdirectories[:] = entered
        for name in files:
            path = here / name
            with contextlib.suppress(OSError):
                if not stat.S_ISREG(path.lstat().st_mode) or keep(path.relative_to(root)):
                    continue
                visit(path)
    return changed
