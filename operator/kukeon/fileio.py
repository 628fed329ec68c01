"""Replacing a file so that a reader (or a crash) sees the old content or the new, never a mix.

One helper for every layer that writes state files (the store's certificates and key file,
the runtime's conflists, records and staged secrets): it imports nothing of kukeon, so the
store and the runtime may both use it without depending on each other. Beside it, the
check of a credential file an administrator gives kukeond (``warn_if_open_to_others``), and
what a write the host's disk refused is called (``host_disk_refusal``), by the controllers'
statuses and the API's answers alike.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


_SEARCH, _WRITE, _READ = 0o001, 0o002, 0o004
"""The "others" bits: what an account that is neither the owner nor in the group may do."""
_MAX_LINKS = 40  # as the kernel's lookup (ELOOP)


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


@dataclass(frozen=True)
class _Step:
    """One entry a lookup of the path reads: ``name`` in ``directory`` (a real path)."""

    directory: Path
    name: str
    entry: os.stat_result
    """The entry itself (``lstat``: a symbolic link is its own entry)."""
    directory_stat: os.stat_result


def _lookup(path: Path) -> tuple[list[_Step], Path]:
    """Every entry a lookup of ``path`` reads, symbolic links followed as the kernel does,
    and the real path it ends at: whoever may replace any of these entries decides what
    kukeond opens."""
    # Not os.path.abspath: it drops `x/..` as text, where the kernel follows a link `x` first.
    pending = list((Path.cwd() / path).parts[1:])
    current, steps, links = Path("/"), [], 0
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = current.parent
            continue
        candidate = current / name
        entry = os.lstat(candidate)
        steps.append(_Step(current, name, entry, os.stat(current)))
        if stat.S_ISLNK(entry.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(f"too many symbolic links in {path}")
            target = Path(os.readlink(candidate))
            if target.is_absolute():
                current = Path("/")
                pending = list(target.parts[1:]) + pending
            else:
                pending = list(target.parts) + pending
            continue
        current = candidate
    return steps, current


def closed_to_others(directory: Path) -> tuple[Path, int] | None:
    """The top-most of ``directory`` and the directories above it that an account neither
    owner nor in the group cannot get through (no search bit for "others"), with its mode;
    None when every one lets them through. ``OSError`` when one cannot be looked up."""
    for step in (*reversed(directory.parents), directory):
        mode = stat.S_IMODE(os.stat(step).st_mode)
        if not mode & _SEARCH:
            return step, mode
    return None


def _reachable_by_others(directory: Path) -> bool:
    return closed_to_others(directory) is None


@dataclass(frozen=True)
class PathProblems:
    """What lets other local users at a file: read it, or change what it holds."""

    read: tuple[str, ...] = ()
    change: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.read or self.change)


def path_problems(path: Path, *, secret: bool = True) -> PathProblems:
    """What lets local users other than root and this process's user read (``secret``)
    or change the file ``path`` names, judged along the whole path as the kernel would:
    the file's own mode counts only where every directory above it lets others through;
    a directory others may write (without the sticky bit, or with it but the entry in it
    theirs) lets them put their own file in its place; an owner who is not root (nor us)
    may do anything. Group permissions are the administrator's choice and not judged.
    ``OSError`` when the path cannot be looked up."""
    trusted = {0, os.geteuid()}
    steps, real = _lookup(path)
    problems: dict[str, None] = {}  # what lets them change it, in order, once each
    for step in steps:
        where = step.directory / step.name
        if step.directory_stat.st_uid not in trusted:
            problems[
                f"the directory {step.directory} belongs to {_user(step.directory_stat.st_uid)}, "
                f"who may replace {step.name} in it"
            ] = None
        mode = stat.S_IMODE(step.directory_stat.st_mode)
        if not mode & _WRITE or not _reachable_by_others(step.directory):
            continue
        if not mode & stat.S_ISVTX:
            problems[
                f"the directory {step.directory} is writable by every local user (mode "
                f"{mode:04o}, no sticky bit): anyone may rename {step.name} away and put "
                "their own in its place"
            ] = None
        elif step.entry.st_uid not in trusted:
            problems[
                f"{where} belongs to {_user(step.entry.st_uid)}, who may replace it in the "
                f"sticky directory {step.directory} (mode {mode:04o}) every local user writes"
            ] = None
    target = os.stat(real)
    mode = stat.S_IMODE(target.st_mode)
    read: list[str] = []
    if target.st_uid not in trusted:
        owner = _user(target.st_uid)
        problems[f"it belongs to {owner}, who may rewrite it or open it to anyone"] = None
        read.append(f"its owner {owner} reads it")
    through = _reachable_by_others(real.parent)
    if mode & _WRITE and through:
        problems[f"every local user may write it (mode {mode:04o})"] = None
    if mode & _READ and through:
        read.append(
            f"every local user may read it (mode {mode:04o}, and every directory above "
            "it lets others through)"
        )
    return PathProblems(read=tuple(read) if secret else (), change=tuple(problems))


def warn_if_open_to_others(
    path: Path,
    what: str,
    *,
    if_replaced: str = "kukeond reads theirs instead",
    secret: bool = True,
) -> bool:
    """Log one warning naming what lets other local users read or change ``path`` (see
    ``path_problems``); True when something does. A tokens or key file made under the
    usual umask 022 is 0644: every local account then reads the credential in it (an
    admin token is root on the host); a 0600 file in a directory others may write is
    theirs to replace. ``if_replaced`` says what a file of theirs in its place does;
    ``secret``: what the file holds must not be read (a configuration without a password
    is public, but not to be replaced).

    A warning, not a refusal (the encryption key file's own mode rule aside): these files
    are the administrator's, often made before this check existed, and kukeond must still
    start.
    """
    try:
        problems = path_problems(path, secret=secret)
    except OSError:
        return False  # the reader reports an unreadable file
    if not problems:
        return False
    said = list(dict.fromkeys([*problems.change, *problems.read]))
    if problems.read:
        said.append("whoever reads it holds the credential in it")
    if problems.change:
        said.append(f"with a file of theirs in its place {if_replaced}")
    log.warning(
        "the %s %s is open to other local users: %s (make it root's, mode 600, in "
        "directories only root may write)",
        what,
        path,
        "; ".join(said),
    )
    return True


def write_atomically(path: Path, data: bytes | str, *, mode: int, durable: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``path`` (given ``mode`` before any byte, so a
    secret is never readable by others, even for a moment), flush it to disk, rename it over
    ``path`` and flush the directory. The parent directory must exist; on any failure the
    temporary file is removed and ``path`` is untouched. An ``OSError`` names ``path``
    (a write, flush or fsync refused for space names no file of its own, so a status said
    "No space left on device" without saying where).

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
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)
        raise
    if durable:
        sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    """Flush ``path``'s entries to disk: a file created, renamed or removed in it (a
    directory made in it) survives a power loss once this returns."""
    directory = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


_HOST_DISK_REASONS = {
    errno.ENOSPC: "HostDiskFull",
    errno.EDQUOT: "HostDiskFull",
    errno.EROFS: "HostDiskReadOnly",
}


def _oserrors(error: BaseException) -> list[OSError]:
    """The OSErrors of the error's chain (what it was raised from or during), nearest first."""
    found: list[OSError] = []
    seen: BaseException | None = error
    for _ in range(16):  # a chain is short; a cycle must not hang a worker
        if seen is None:
            break
        if isinstance(seen, OSError):
            found.append(seen)
        seen = seen.__cause__ or seen.__context__
    return found


def host_disk_refusal(error: BaseException) -> tuple[str, OSError] | None:
    """The reason (``HostDiskFull``: no space, over quota; ``HostDiskReadOnly``) and the
    OSError of a write the host's disk refused, found on the error or on what it was raised
    from; None for anything else."""
    for oserror in _oserrors(error):
        if oserror.errno in _HOST_DISK_REASONS:
            return _HOST_DISK_REASONS[oserror.errno], oserror
    return None
