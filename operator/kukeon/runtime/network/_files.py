"""Small file helpers shared by the network modules: atomic replace and in-place rewrite.

Configuration read by other programs (CNI conflists, the subnet store) must never be seen
half written, hence write-to-temp-then-rename. Files bind-mounted into running containers
(``/etc/hosts``) must instead keep their inode, or the container would keep the old copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kukeon import fileio
from kukeon.runtime.hostfiles import DIR_MODE, make_dirs


def write_atomically(
    path: Path,
    data: str,
    *,
    mode: int = 0o644,
    directory_mode: int = DIR_MODE,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new content, never a mix.

    Missing directories are created with ``directory_mode``; ``durable`` as
    ``kukeon.fileio.write_atomically``.
    """
    make_dirs(path.parent, directory_mode)
    fileio.write_atomically(path, data, mode=mode, durable=durable)


def write_keeping_inode(path: Path, data: str, *, mode: int = 0o644, durable: bool = True) -> None:
    """Rewrite an existing file in place (bind mounts keep seeing it); create it atomically."""
    if not path.exists():
        write_atomically(path, data, mode=mode, durable=durable)
        return
    with open(path, "r+", encoding="utf-8") as handle:
        handle.seek(0)
        handle.write(data)
        handle.truncate()
        handle.flush()
        if durable:
            os.fsync(handle.fileno())


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def unlink_if_present(path: Path) -> bool:
    """Remove ``path``; return whether something was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_tree_if_present(path: Path) -> bool:
    """Remove the directory ``path`` and what is in it; return whether it was there."""
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True
