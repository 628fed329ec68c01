"""Replacing a file so that a reader (or a crash) sees the old content or the new, never a mix.

One helper for every layer that writes state files (the store's certificates and key file,
the runtime's conflists, records and staged secrets): it imports nothing of kukeon, so the
store and the runtime may both use it without depending on each other. Beside it, the
check of a credential file an administrator gives kukeond (``warn_if_open_to_others``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def warn_if_open_to_others(path: Path, what: str) -> bool:
    """Log a warning when users other than ``path``'s owner and group may read or write it
    (a tokens or key file made under the usual umask 022 is 0644: every local account then
    reads the credential in it, an admin token being root on the host); True when so.

    A warning, not a refusal (the encryption key file's rule): these files are the
    administrator's, often made before this check existed, and kukeond must still start.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return False  # the reader reports an unreadable file
    if not mode & 0o007:
        return False
    log.warning(
        "the %s %s is open to every local user (mode %04o): any account on this host "
        "reads the credential in it; chmod o-rwx (or 600) it",
        what,
        path,
        mode,
    )
    return True


def write_atomically(path: Path, data: bytes | str, *, mode: int, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` (given ``mode`` before any byte, so a
    secret is never readable by others, even for a moment), flush it to disk, rename it over
    ``path`` and flush the directory. The parent directory must exist; on any failure the
    temporary file is removed and ``path`` is untouched.

    ``durable=False`` skips both flushes to disk: the rename still makes the change whole
    for readers and across a killed process, only a power loss may lose it (for files
    rewritten by every pass, whose users a power loss takes down with them).
    """
    payload = data.encode() if isinstance(data, str) else data
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        os.fchmod(descriptor, mode)  # exact whatever the umask
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(payload)
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if not durable:
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
