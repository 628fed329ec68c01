"""kukeond's own directories on the host: created with their modes, narrowed at every start.

The state directory (``0750``, root's) holds cells' files, logs, staged secrets, network
leases, image archives and the embedded etcd; the run directory (``0750``, group
``kukeon``) holds the API socket, which that group may use. Both are narrowed at start
together with everything under them: an older kukeon made logs ``0644`` in ``0755``
directories, readable by every local user. The files a container's user must read
through a bind mount keep their modes (:func:`kukeon.controllers.cellfiles.container_readable`).

A node's kukeond (not ``--api-only``) also makes the network namespace directory (``0750``)
and the CNI configuration directory (``0755``: other CNI users read it) at start, and
refuses both when another account may change them, as the state and run directories: the
cells' namespaces are bind-mounted in the first (a directory of the host bound on itself,
were it a link to one), and kukeond reads its conflists back from the second to run the
CNI plugins as root with them (the owner of that directory would write their own).
"""

from __future__ import annotations

import grp
import logging
import os
from pathlib import Path

from kukeon.controllers.cellfiles import container_readable
from kukeon.fileio import path_problems
from kukeon.runtime.hostfiles import DIR_MODE, SHARED_CONFIG_DIR_MODE, make_dirs, narrow_tree

from .config import DaemonConfig
from .starterrors import StartupError

log = logging.getLogger(__name__)


def _group_id(name: str | None) -> int | None:
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def share_run_dir(run_dir: Path, group: str | None) -> None:
    """``run_dir`` is ``0750`` and belongs to ``group`` (the API socket's), or root's only.

    The socket itself is ``0660`` with that group; its directory must let the group through
    and nobody else. Blocking.
    """
    gid = _group_id(group)
    info = run_dir.stat()
    wanted_gid = 0 if gid is None else gid
    if info.st_gid != wanted_gid:
        os.chown(run_dir, -1, wanted_gid)
    if info.st_mode & 0o7777 != DIR_MODE:
        os.chmod(run_dir, DIR_MODE)


def _own_directories(config: DaemonConfig) -> list[tuple[str, Path, int]]:
    """What kukeond claims at start: (what it is, where, the mode it is made with)."""
    own = [("state", config.state_dir, DIR_MODE), ("run", config.run_dir, DIR_MODE)]
    if not config.api_only:
        own.append(("network namespace", config.netns_dir, DIR_MODE))
        own.append(("CNI configuration", config.cni_conf_dir, SHARED_CONFIG_DIR_MODE))
    return own


def claim_host_directories(config: DaemonConfig) -> None:
    """Create kukeond's directories on the host when missing (the state and run
    directories, and on a node the network namespace and CNI configuration ones); a
    ``StartupError`` when another account than root may change one, before kukeond puts
    or changes anything in them. Blocking.

    The check comes first: a path under ``/tmp`` may have been made by anyone before
    kukeond started, as a directory of theirs or a link to any directory of the host
    (``/etc``), and the run directory's ``chown``/``chmod``, the narrowing of both trees
    and the lock files would all have been done there."""
    for what, directory, mode in _own_directories(config):
        try:
            make_dirs(directory, mode)
        except OSError as error:
            raise StartupError(f"cannot make the {what} directory {directory}: {error}") from error
        refuse_if_changeable(what, directory)


def prepare_host_directories(config: DaemonConfig, *, socket_group: str | None) -> None:
    """Claim the state and run directories (:func:`claim_host_directories`), give the run
    directory the socket's group and narrow what is in both. Blocking."""
    claim_host_directories(config)
    share_run_dir(config.run_dir, socket_group)
    changed = narrow_tree(config.state_dir, keep=container_readable)
    changed += narrow_tree(config.run_dir)
    if changed:
        log.info(
            "narrowed the modes of %d files and directories under %s and %s",
            changed,
            config.state_dir,
            config.run_dir,
        )


def refuse_if_changeable(what: str, directory: Path) -> None:
    """A ``StartupError`` when an account other than root may change ``directory``: own it
    (one made in ``/tmp`` before kukeond, by anyone), or replace it or a directory above
    it. kukeond keeps its etcd's keys, staged secrets and the API socket there, and the
    modes it sets are no obstacle to the directory's owner."""
    problems = path_problems(directory, secret=False).change
    if problems:
        raise StartupError(
            f"the {what} directory {directory} is open to other local users: "
            f"{'; '.join(problems)}; they could read or replace what kukeond keeps there "
            "(make it, and every directory above it, root's and writable by root only)"
        )
