"""Unpacking a tar stream that a container sent, without trusting it (``kukectl cp``).

The stream comes from ``tar`` run inside a container whose owner may be hostile, so every
member is checked before anything is written, as kubectl learnt to do (CVE-2018-1002100,
CVE-2019-1002101, CVE-2019-11246, CVE-2019-11249 and CVE-2019-11251):

- a member's name must be relative, without ``..``, and lie under the one name asked for
  (``tar -c NAME`` produces nothing else): anything else stops the copy (UnsafeArchiveError);
- nothing is written through a symbolic link: every directory on the way is opened with
  ``O_NOFOLLOW`` from the destination's parent down (``openat``), so a link the archive
  planted (``d -> /etc``, then ``d/passwd``), or one already in the destination, stops
  the copy instead of being followed; a file in the way of a member is replaced, never
  opened through;
- a symbolic link member is created only when its target, read from where it sits, stays
  inside the destination whatever the copy's other links point to: its ``..`` all come
  before its first name (``a/s/..`` could go up from a link ``a/s -> ..``); an absolute
  target, one that leaves, or one going up after a name is skipped with a warning
  (kubectl skips every link);
- a hard link member must name a regular file this copy wrote; otherwise it is skipped;
- devices, FIFOs and anything but files, directories and links are skipped with a warning;
- modes are kept without the setuid, setgid and sticky bits and less the umask of whoever
  runs kukectl, as kubectl's cp creates files (a container's world-writable ``/tmp`` is
  not a world-writable directory here); owners are not (what is written belongs to whoever
  runs kukectl); modification times are kept.

Directories get their modes at the end, deepest first, so a read-only directory in the
archive does not stop its own contents.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MODE_BITS = 0o777
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeArchiveError(Exception):
    """The stream holds a member that would be written outside the destination."""


@dataclass
class Report:
    """What an extraction did: members written, members skipped (with why)."""

    written: int = 0
    skipped: list[str] = field(default_factory=list)


def member_parts(name: str, top: str) -> list[str]:
    """The components of ``name`` below ``top`` (``[]`` for ``top`` itself).

    UnsafeArchiveError for an absolute name, a ``..`` component, a NUL, or a name outside
    ``top``. ``.`` and empty components (``a//b``, ``./a``, a directory's trailing ``/``)
    are dropped, as tar itself reads them.
    """
    if "\x00" in name:
        raise UnsafeArchiveError(f"member {name[:200]!r}: a NUL in its name")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"member {name[:200]!r}: an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"member {name[:200]!r}: a '..' component")
    if not parts or parts[0] != top:
        raise UnsafeArchiveError(f"member {name[:200]!r}: not under {top!r}, the path asked for")
    return parts[1:]


def _link_leaves(parts: list[str], target: str) -> str | None:
    """Why a symbolic link at ``parts`` (below the destination) pointing to ``target`` may
    resolve outside the destination, or None when it stays inside whatever the other links
    of the copy point to.

    Only ``..`` before every name is taken: the link's own parents are real directories
    (opened without following links), so going up from there is counted exactly, and every
    name below is a directory, a file or a link checked the same way. A ``..`` after a name
    is not: the name may be a link of the copy (``a/s -> ..``), and ``a/s/../x`` then
    leaves the destination though counting its components says it stays."""
    if not target or target.startswith("/") or "\x00" in target:
        return "it points outside the destination"
    depth = len(parts) - 1  # the directories between the destination and the link
    named = False
    for piece in target.split("/"):
        if piece in ("", "."):
            continue
        if piece != "..":
            named = True
        elif named:
            return "it goes up ('..') after a name, which a link could lead outside the destination"
        elif (depth := depth - 1) < 0:
            return "it points outside the destination"
    return None


class _Tree:
    """Directories below the destination's parent, opened without following links."""

    def __init__(self, parent: Path) -> None:
        self.root_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.root_fd)

    @contextlib.contextmanager
    def directory(self, parts: list[str], *, create: bool) -> Iterator[int]:
        """A descriptor of the directory ``parts`` (below the parent), each component
        opened with O_NOFOLLOW; missing ones made (0700, their mode comes later) when
        ``create``. UnsafeArchiveError when one is a link or not a directory."""
        fds: list[int] = []
        current = self.root_fd
        try:
            for part in parts:
                try:
                    current = os.open(part, _DIR_FLAGS, dir_fd=current)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o700, dir_fd=current)
                    current = os.open(part, _DIR_FLAGS, dir_fd=current)
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafeArchiveError(
                            f"{'/'.join(parts)}: {part!r} on the way is a symbolic link or "
                            "not a directory; nothing is written through it"
                        ) from None
                    raise
                fds.append(current)
            yield current
        finally:
            for fd in fds:
                os.close(fd)

    @staticmethod
    def clear(dir_fd: int, name: str, *, keep_directory: bool) -> bool:
        """Remove what is at ``name`` unless it is a directory; whether a directory is
        there (kept when ``keep_directory``, else an error)."""
        try:
            found = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(found.st_mode):
            if keep_directory:
                return True
            raise IsADirectoryError(errno.EISDIR, "a directory is in the way", name)
        os.unlink(name, dir_fd=dir_fd)
        return False


def current_umask() -> int:
    """This process's umask, read without changing it (``/proc/self/status``; a set and
    reset where that line is missing, before Linux 4.7)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


class _Extraction:
    """One extraction: what it has written so far (a hard link may only name a file this
    copy wrote), the directories whose modes come last, and its report."""

    def __init__(self, *, top: str, dest: Path, warn: Callable[[str], None]) -> None:
        self.top = top
        self.dest = dest
        self.warn = warn
        self.report = Report()
        self.tree = _Tree(dest.parent)
        self.base = [dest.name]
        self.files: set[tuple[str, ...]] = set()
        self.directories: list[tuple[list[str], int, float]] = []
        self.modes = MODE_BITS & ~current_umask()
        """The permission bits a member keeps."""

    def unpack(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Write ``member`` (or skip it, with a warning); UnsafeArchiveError stops the copy."""
        parts = member_parts(member.name, self.top)
        path = self.base + parts
        if member.isdir():
            self._directory(member, parts, path)
        elif member.isreg():
            self._regular(archive, member, parts, path)
        elif member.issym():
            if not self._symlink(member, parts, path):
                return
        elif member.islnk():
            if not self._hard_link(member, parts, path):
                return
        else:
            self._skip(f"skipping {self._shown(parts)}: {_kind(member)}", "")
            return
        self.report.written += 1

    def _shown(self, parts: list[str]) -> str:
        return "/".join([self.top, *parts])

    def _skip(self, why: str, because: str) -> None:
        self.report.skipped.append(why)
        self.warn(f"{why}: {because}" if because else why)

    def _directory(self, member: tarfile.TarInfo, parts: list[str], path: list[str]) -> None:
        if not parts and self.dest.exists() and not self.dest.is_dir():
            raise NotADirectoryError(
                errno.ENOTDIR, f"{self.top} is a directory and this is not", str(self.dest)
            )
        with self.tree.directory(path[:-1], create=True) as parent_fd:
            if not _Tree.clear(parent_fd, path[-1], keep_directory=True):
                os.mkdir(path[-1], 0o700, dir_fd=parent_fd)
        self.directories.append((path, member.mode & self.modes, member.mtime))
        self.files.discard(tuple(parts))

    def _regular(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        parts: list[str],
        path: list[str],
    ) -> None:
        source = archive.extractfile(member)
        assert source is not None
        with self.tree.directory(path[:-1], create=True) as parent_fd:
            _Tree.clear(parent_fd, path[-1], keep_directory=False)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path[-1], flags, 0o600, dir_fd=parent_fd)
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(1 << 16):
                    out.write(chunk)
                out.flush()
                os.fchmod(out.fileno(), member.mode & self.modes)
                os.utime(out.fileno(), (member.mtime, member.mtime))
        self.files.add(tuple(parts))

    def _symlink(self, member: tarfile.TarInfo, parts: list[str], path: list[str]) -> bool:
        if not parts:
            raise UnsafeArchiveError(
                f"{self.top} is a symbolic link (to {member.linkname[:200]!r}) in the "
                "container: copy the path it points to"
            )
        if (leaves := _link_leaves(parts, member.linkname)) is not None:
            why = f"skipping symbolic link {self._shown(parts)} -> {member.linkname[:200]}"
            self._skip(why, leaves)
            return False
        with self.tree.directory(path[:-1], create=True) as parent_fd:
            _Tree.clear(parent_fd, path[-1], keep_directory=False)
            os.symlink(member.linkname, path[-1], dir_fd=parent_fd)
        self.files.discard(tuple(parts))
        return True

    def _hard_link(self, member: tarfile.TarInfo, parts: list[str], path: list[str]) -> bool:
        try:
            target = member_parts(member.linkname, self.top)
        except UnsafeArchiveError:
            target = None
        if target is None or tuple(target) not in self.files:
            why = f"skipping hard link {self._shown(parts)} -> {member.linkname[:200]}"
            self._skip(why, "not a file this copy wrote")
            return False
        source_path = self.base + target
        with (
            self.tree.directory(source_path[:-1], create=False) as source_fd,
            self.tree.directory(path[:-1], create=True) as parent_fd,
        ):
            _Tree.clear(parent_fd, path[-1], keep_directory=False)
            os.link(
                source_path[-1],
                path[-1],
                src_dir_fd=source_fd,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
        self.files.add(tuple(parts))
        return True

    def set_directory_modes(self) -> None:
        """The directories' modes and times, deepest first (a read-only directory of the
        archive did not stop its own contents)."""
        for path, mode, mtime in sorted(self.directories, key=lambda d: -len(d[0])):
            with self.tree.directory(path, create=False) as fd:
                os.fchmod(fd, mode)
                os.utime(fd, (mtime, mtime))


def extract(
    stream: IO[bytes],
    *,
    top: str,
    dest: Path,
    warn: Callable[[str], None],
) -> Report:
    """Unpack ``stream`` so that its member ``top`` becomes ``dest`` (and ``top/x``
    becomes ``dest/x``). ``dest``'s parent must exist; it is the one path followed as
    given (the user's own choice)."""
    extraction = _Extraction(top=top, dest=dest, warn=warn)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                extraction.unpack(archive, member)
        extraction.set_directory_modes()
    finally:
        extraction.tree.close()
    return extraction.report


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "a device is not copied"
    if member.isfifo():
        return "a FIFO is not copied"
    return f"unsupported member type {member.type!r}"


def local_target(dest: Path, source_name: str) -> Path:
    """Where ``kukectl cp CELL:SRC DEST`` writes: inside DEST when it is a directory (as
    cp(1) and docker cp do), else DEST itself."""
    if dest.is_dir():
        return dest / source_name
    return dest


def container_target(dest: str, source_name: str) -> tuple[str, str | None]:
    """Where ``kukectl cp SRC CELL:DEST`` writes, and the name kukeond is given for it
    (``cp``'s ``name``): inside DEST when DEST ends in ``/`` or names a directory by itself
    (``.``, ``..``), with no name; else DEST with SRC's name, for kukeond to put the copy
    inside DEST as that name when DEST is a directory in the container, or as DEST when it
    is not (kukeond looks, through the container's root, as the copy starts)."""
    if dest.endswith("/") or posixpath.basename(posixpath.normpath(dest)) in {"", ".", ".."}:
        return posixpath.join(dest, source_name), None
    return dest, source_name
