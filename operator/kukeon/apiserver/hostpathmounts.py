"""Whether the filesystems of ``allowedHostPaths`` keep a container's files from the host.

Admission lets editors below ``privileged`` bind directories under ``allowedHostPaths``
read-write. Containers run without a user namespace, so a container's root is the host's
root on that filesystem, and root and ``CAP_MKNOD`` are in every container's default set:
through such a bind a tenant can leave a setuid-root program (``chmod 4755``) or a device
node (``mknod disk b 8 0; chmod 666``) in the host directory, which makes any host user who
reaches it root. No rule of the API server can see the node's files; a filesystem mounted
``nosuid,nodev`` ignores both. So the API server says, once at start, which allowed
directory of this host lies on a filesystem that honours them (docs/kukectl.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from kukeon.apiserver.admission import realm_root

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


def warn_about_host_paths(directories: Iterable[str]) -> None:
    """Log a warning for each allowed directory whose filesystem honours setuid programs or
    device nodes (blocks: run it in a thread)."""
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
