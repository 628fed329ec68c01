"""Whether the filesystems of ``allowedHostPaths`` keep a container's files from the host.

Admission lets editors below ``privileged`` bind directories under ``allowedHostPaths``
read-write. Containers run without a user namespace, so a container's root is the host's
root on that filesystem, and root and ``CAP_MKNOD`` are in every container's default set:
through such a bind a tenant can leave a setuid-root program (``chmod 4755``) or a device
node (``mknod disk b 8 0; chmod 666``) in the host directory, which makes any host user who
reaches it root. No rule of the API server can see the node's files; a filesystem mounted
``nosuid,nodev`` ignores both. So the API server says, once at start, which allowed
directory of this host lies on a filesystem that honours them (docs/kukectl.md).

It also says which of them other local users may write into (or replace, or read, for
``secretDirs``): the node follows symbolic links in them (paths are compared as written),
so a local user who may put a link in an allowed directory sends a bind there, or a
``fromFile`` read by kukeond as root, to any file of the host (kukeond's etcd key, the
tokens file), and one who may read a secret directory reads every realm's secrets in it.
A ``{realm}`` entry is looked at where every realm's directory lies and in each of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from kukeon.apiserver.admission import REALM_PLACEHOLDER, realm_root
from kukeon.fileio import path_problems

log = logging.getLogger(__name__)

_FLAGS = (("nosuid", os.ST_NOSUID), ("nodev", os.ST_NODEV))


def missing_mount_options(directory: str) -> list[str]:
    """Which of ``nosuid`` and ``nodev`` the filesystem of ``directory`` lacks (none for a
    directory this host does not have: an API server may serve other nodes)."""
    try:
        flags = os.statvfs(directory).f_flag
    except OSError:
        return []
    return [name for name, flag in _FLAGS if not flags & flag]


_MAX_FILES_LOOKED_AT = 1000
"""Files of a secret directory whose modes are looked at (the first ones found)."""


def _directories_of(directory: str) -> Iterator[Path]:
    """``directory``, or for a ``{realm}`` entry the directory every realm's lies in and
    each realm's directory there that exists."""
    root = Path(realm_root(directory))
    yield root
    if REALM_PLACEHOLDER in directory.split("/") and root.is_dir():
        yield from sorted(entry for entry in root.iterdir() if entry.is_dir())


def open_to_others(directory: str) -> list[str]:
    """What lets local users other than root put their own entry (a symbolic link) in
    ``directory`` or in a directory on its path, or replace it (see
    ``fileio.path_problems``); nothing for a directory this host does not have."""
    found: dict[str, None] = {}
    for path in _directories_of(directory):
        try:
            problems = path_problems(path, secret=False).change
            searchable = os.stat(path).st_mode & 0o001
        except OSError:
            continue
        for problem in problems:
            # Writing a directory takes its search bit too (path_problems judges files).
            if problem.startswith("every local") and not searchable:
                continue
            # Those about the directory itself say "it": name it (a realm's, or the root).
            mine = problem.startswith(("it ", "every local"))
            found[f"{path}: {problem}" if mine else problem] = None
    return list(found)


def readable_by_others(directory: str) -> list[str]:
    """The files under ``directory`` (a secret directory) that every local user may read."""
    readable: list[str] = []
    looked = 0
    for root in _directories_of(directory):
        for parent, _, files in os.walk(root):
            for name in files:
                looked += 1
                if looked > _MAX_FILES_LOOKED_AT:
                    return readable
                path = Path(parent) / name
                try:
                    if path_problems(path, secret=True).read:
                        readable.append(str(path))
                except OSError:
                    continue
        if REALM_PLACEHOLDER in directory.split("/"):
            break  # the realm root's walk went through every realm's directory
    return readable


def _warn_about_open_directories(host_paths: Iterable[str], secret_dirs: Iterable[str]) -> None:
    for what, directories, follows in (
        ("allowedHostPaths", host_paths, "a bind follows to anywhere on the host, read-write"),
        (
            "secretDirs",
            secret_dirs,
            "a fromFile follows, kukeond reading as root any file of the host (its etcd key "
            "included) into a tenant's container",
        ),
    ):
        for directory in directories:
            problems = open_to_others(directory)
            if problems:
                log.warning(
                    "%s directory %s is open to other local users: %s; a symbolic link of "
                    "theirs there is what %s (make it and the directories above it root's, "
                    "writable by root only)",
                    what,
                    directory,
                    "; ".join(problems),
                    follows,
                )
    for directory in secret_dirs:
        readable = readable_by_others(directory)
        if readable:
            log.warning(
                "secretDirs directory %s holds files every local user may read: %s (chmod "
                "600 them, or 700 the directory)",
                directory,
                ", ".join(readable[:5])
                + (f" and {len(readable) - 5} more" if len(readable) > 5 else ""),
            )


def warn_about_host_paths(directories: Iterable[str], secret_dirs: Iterable[str] = ()) -> None:
    """Log a warning for each allowed directory whose filesystem honours setuid programs or
    device nodes, and for each allowed or secret directory other local users may write
    into (a secret directory's files: read) (blocks: run it in a thread)."""
    directories, secret_dirs = list(directories), list(secret_dirs)
    _warn_about_open_directories(directories, secret_dirs)
    for directory in directories:
        # A realm's own directory may not exist yet: the one they all lie in is looked at.
        missing = missing_mount_options(realm_root(directory))
        if missing:
            log.warning(
                "allowedHostPaths directory %s is on a filesystem mounted without %s: a "
                "container bound there read-write can leave setuid-root programs or device "
                "nodes that make a host user root; mount it %s (docs/kukectl.md)",
                directory,
                " and ".join(missing),
                ",".join(missing),
            )
