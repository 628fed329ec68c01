"""The per-namespace directories containerd's runc shim leaves on the host after the
namespace is deleted: removed when empty.

containerd (1.6 to 2.x) deletes a namespace as a metadata record only; nothing on the
host is tied to it. Its first task there leaves three directories that stay for good:

- ``/run/containerd/runc/<namespace>``: runc's root (``--root``) of every container the
  runc shim runs there. The shim takes ``/run/containerd/runc`` (``process.RuncRoot``)
  when the container's runtime options give no ``Root``, which kukeon's never do, so
  this is the same directory for every containerd on the host whatever its own state
  directory (a tmpfs: memory);
- ``<root>/io.containerd.runtime.v2.task/<namespace>``: the parent of the tasks' work
  directories, made with ``MkdirAll`` and never removed (``Bundle.Delete`` removes only a
  task's own directory);
- ``<state>/io.containerd.runtime.v2.task/<namespace>``: the parent of the tasks'
  bundles, likewise. containerd exports no state directory (its introspection gives the
  plugins' ``root`` only), so kukeon cannot name it and leaves it.

Only an empty directory goes: ``rmdir`` refuses a non-empty one and never follows a
symbolic link (a link in that place is left as it is).

They go only in the purge of a namespace kukeon owns, after containerd deleted it (the
realm is being deleted: nothing of kukeon creates a task there meanwhile). No sweep of
every ``*.kukeon.io`` directory whose namespace this containerd lacks: runc's root is
shared by every containerd on the host (another's namespaces are not in this one's list),
and an ``rmdir`` between runc's ``mkdir`` of the namespace directory and of the
container's in it would fail that create.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

RUNC_ROOT: Final = Path("/run/containerd/runc")
"""The runc shim's default runc root (containerd's ``process.RuncRoot``), used for every
container whose runtime options name no ``Root``."""
TASK_PLUGIN_DIR: Final = "io.containerd.runtime.v2.task"
"""The task plugin's directory under containerd's root and under its state."""
CONTENT_PLUGIN_DIR: Final = "io.containerd.content.v1.content"
"""The content plugin's directory under containerd's root: its exported ``root``."""
_LEFT_AS_IS: Final = frozenset({errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR})
"""Gone already, not empty (EEXIST on some filesystems), or not a directory (a link)."""


def task_dirs_root(content_root: str | None) -> Path | None:
    """containerd's ``<root>/io.containerd.runtime.v2.task`` from the content plugin's
    exported root (``<root>/io.containerd.content.v1.content``); None when containerd
    exports none or a content store elsewhere (a proxy plugin)."""
    if not content_root:
        return None
    content = Path(content_root)
    if content.name != CONTENT_PLUGIN_DIR or not content.is_absolute():
        return None
    return content.parent / TASK_PLUGIN_DIR


def remove_empty_namespace_dirs(namespace: str, parents: Iterable[Path]) -> list[Path]:
    """``<parent>/<namespace>`` removed in each parent where it is an empty directory; the
    ones removed. Blocking: callers run it in a thread."""
    if not namespace or namespace in {".", ".."} or "/" in namespace or "\0" in namespace:
        raise ValueError(f"not a containerd namespace name: {namespace!r}")
    removed: list[Path] = []
    for parent in parents:
        path = parent / namespace
        try:
            os.rmdir(path)
        except OSError as error:
            if error.errno not in _LEFT_AS_IS:
                log.warning("namespace %s: %s not removed: %s", namespace, path, error)
            continue
        removed.append(path)
    return removed
