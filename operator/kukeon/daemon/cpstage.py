"""A copy into a container that never leaves a half-written file (``cp`` with ``mode=write``).

tar in the container unpacks in place: a stream cut short (the client killed, the connection
lost, the disk full) would leave a half-written file where a whole one was. So kukeond
rewrites the client's tar stream on its way to tar: every member that is not a directory is
named beside its destination under a hidden name, ``DIR/.NAME.kukeon-cp-TOKEN`` (the same
directory, so the same file system: a rename is atomic), and a hard link to a member of the
upload points at that member's hidden name. Directories keep their names, so a directory
unpacked onto an existing one is merged into it, as tar merges. An upload of one file or
directory named for its destination (``cp``'s ``name``: :class:`Upload`'s ``copy``) is put
inside its destination instead when that is a directory already, its members renamed under
it, as ``docker cp`` and ``kubectl cp`` put a copy into an existing directory.

Only once tar has read the whole stream and exited 0 are the hidden names renamed to their
destinations (:func:`commit`), in the archive's order; otherwise (tar failed, the client went
away, the stream was cut or refused) every hidden name is removed (:func:`discard`) and what
was at the destinations is left as it was. Directories the upload created stay (empty ones,
for a cut upload: tar made them as it went).

The renames and removals are kukeond's, made through the root of the tar process (its
``/proc/PID/root``, opened while it runs, checked against a pidfd so a reused pid cannot
stand in): every directory is opened with ``openat2(RESOLVE_IN_ROOT)``, which resolves a path,
its symbolic links and ``..`` included, as if that root were ``/``, so nothing outside the
container's file system is ever named; the final components are never followed (``renameat``,
``unlinkat``). Only names kukeond chose (its random token) are renamed or removed, each in
the directory the container's tar created it in, as that process's user (``tar -o``): tar
could do the same rename itself, except in a sticky directory (``/tmp``), where a rename over
a file of another owner is refused here as the kernel would refuse it to tar.

What an upload stages is noted, before tar is given it, in a journal under the state
directory (:class:`UploadJournal`), removed with the upload's end: a kukeond stopped or killed
mid-upload leaves the next one the names to remove (:mod:`kukeon.daemon.cpleftovers`). The
journal is on disk before tar gets a byte of what it names (created as every state file is,
then ``fdatasync`` before each chunk of the stream that named new members), so a power loss
cannot keep a staged file and lose its name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import io
import json
import logging
import os
import posixpath
import secrets
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kukeon.cancelling import wait_ended
from kukeon.fileio import sync_directory, write_atomically
from kukeon.runtime.containerd.archivetar import ArchiveTarError, open_stream_tar
from kukeon.runtime.containerd.pipes import write_all
from kukeon.runtime.hostfiles import make_dirs
from kukeon.runtime.inroot import open_in_root, open_root

log = logging.getLogger(__name__)

STAGE_MARK = ".kukeon-cp-"
JOURNALS = "cp-staged"
"""Under the state directory: the journal of each upload under way, ``<exec id>.jsonl``."""
MAX_MEMBER_ERRORS = 5


class UploadRefusedError(Exception):
    """The upload's stream is not one kukeond will pass on: the message says why."""


class CommitError(Exception):
    """A staged file could not be renamed into place (the rest were removed)."""


def staged_name(name: str, token: str) -> str:
    """The hidden name beside ``name`` (a member's normalised path) an upload writes first."""
    parent, base = posixpath.split(name)
    return posixpath.join(parent, f".{base}{STAGE_MARK}{token}")


def member_path(name: str) -> str:
    """A member's name as tar in the container writes it (leading ``/`` and ``./`` off);
    UploadRefusedError for one that climbs out with ``..``, as GNU tar refuses it, or that
    has a NUL byte (a pax path may: no file can be named so, and kukeond's rename of it
    failed outside its errors)."""
    if "\0" in name:
        raise UploadRefusedError(f"member {name[:200]!r} has a NUL byte in its name")
    normal = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if normal == ".." or normal.startswith("../") or "/../" in f"/{normal}/":
        raise UploadRefusedError(f"member {name[:200]!r} climbs out of the directory with '..'")
    return normal


@dataclass
class StagedUpload:
    """One upload's staging: the rewriting of its stream, then its commit or discard."""

    token: str = field(default_factory=lambda: secrets.token_hex(8))
    staged: dict[str, str] = field(default_factory=dict)
    """A member's destination -> its hidden name, in the archive's order (both relative to
    the directory tar unpacks in)."""
    directories: dict[str, float] = field(default_factory=dict)
    """The upload's directories and their modification times, which tar set before the
    renames into them changed them: set again once they are done."""
    journal: IO[str] | None = None
    """Where each destination is noted before tar is given it (:class:`UploadJournal`)."""
    unsynced: bool = False
    """Names noted in the journal that are not on disk yet (`sync_journal`)."""
    moved: tuple[str, str] | None = None
    """``(top, to)``: every member must be ``top`` or under it (the one file or directory
    copied) and is put at ``to`` instead (:meth:`Upload.start` decides where)."""

    def _placed(self, name: str) -> str:
        """Where the member ``name`` goes: moved with the copy (UploadRefusedError for one
        that is not part of it)."""
        if self.moved is None:
            return name
        top, to = self.moved
        if name != top and not name.startswith(f"{top}/"):
            raise UploadRefusedError(f"member {name[:200]!r} is not under {top!r}, the copy")
        return to + name[len(top) :]

    def _restaged(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        name = self._placed(member_path(member.name))
        if member.isdir():
            member.name = name
            self.directories[name] = member.mtime
            return member
        if name == ".":
            raise UploadRefusedError(f"member {member.name[:200]!r} is not a directory")
        if member.islnk():
            target = member_path(member.linkname)
            if self.moved is not None:
                # A link to a file of the copy follows it; one to a file already in the
                # container (not under the copy's name) does not.
                with contextlib.suppress(UploadRefusedError):
                    target = self._placed(target)
            member.linkname = self.staged.get(target, target)
        if member.issparse():
            member.type, member.sparse = tarfile.REGTYPE, None  # written out whole
        hidden = self.staged.get(name)
        if hidden is None:
            self._note(name)
            hidden = self.staged[name] = staged_name(name, self.token)
        member.name = hidden
        return member

    def _note(self, name: str) -> None:
        if self.journal is None:
            return
        try:
            self.journal.write(json.dumps(name) + "\n")  # line-buffered: written at once
        except OSError as error:
            raise _unnoted(error) from None
        self.unsynced = True

    def sync_journal(self) -> None:
        """Put the names noted so far on disk (``fdatasync``), before tar is given a byte
        of their members: a staged file a power loss keeps is one the journal names. One
        flush per chunk of the stream that named new members, not one per member."""
        if self.journal is None or not self.unsynced:
            return
        try:
            os.fdatasync(self.journal.fileno())
        except OSError as error:
            raise _unnoted(error) from None
        self.unsynced = False

    def rewrite(self, source: IO[bytes], sink: IO[bytes] | io.RawIOBase, chunk: int) -> None:
        """Copy the tar stream ``source`` to ``sink`` with its members renamed (see the
        module's text), then drain what follows its end. Blocking: for a thread."""
        try:
            with (
                open_stream_tar(source, "r|", bufsize=chunk) as reading,
                open_stream_tar(_JournalFirst(sink, self), "w|", bufsize=chunk) as writing,
            ):
                for member in reading:
                    data = reading.extractfile(member) if member.isreg() else None
                    writing.addfile(self._restaged(member), data)
        except (tarfile.TarError, ArchiveTarError, ValueError, OverflowError) as error:
            # ValueError, OverflowError: tarfile's reading of a header's values, which it does
            # not wrap in its own errors (a pax mtime of nan or 1e400, a sparse map of no
            # numbers, a name in no encoding): the copy ended with no status, said nothing.
            raise UploadRefusedError(
                f"the stream is not a tar archive kukeond can read: {error}"
            ) from None
        while source.read(chunk):
            pass  # the archive's padding, or whatever a client sends after its end


def _unnoted(error: OSError) -> UploadRefusedError:
    return UploadRefusedError(
        f"kukeond cannot note the upload in its state directory: {error.strerror or error}"
    )


class _JournalFirst(io.RawIOBase):
    """The rewritten stream on its way to tar: the journal is on disk before each write."""

    def __init__(self, sink: IO[bytes] | io.RawIOBase, upload: StagedUpload) -> None:
        super().__init__()
        self.sink, self.upload = sink, upload

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.upload.sync_journal()
        written: int | None = self.sink.write(data)
        return len(data) if written is None else written


@dataclass(frozen=True)
class ContainerDirectory:
    """The directory tar unpacks in, as the container sees it: its root and the path."""

    root: int
    path: str
    """Absolute in the container (its working directory joined to a relative one)."""

    def _open(self, relative: str) -> int:
        inside = posixpath.normpath(posixpath.join(self.path, relative)).lstrip("/") or "."
        return open_in_root(self.root, inside, os.O_PATH | os.O_DIRECTORY)

    def is_directory(self, name: str) -> bool:
        """Whether ``name`` (relative) is a directory in the container, its links followed
        as the container's own processes follow them, never out of its root; an error that
        leaves it unknown is UploadRefusedError. Blocking."""
        try:
            os.close(self._open(name))
        except OSError as error:
            if error.errno in {errno.ENOENT, errno.ENOTDIR, errno.ELOOP}:
                return False
            where = posixpath.join(self.path, name)
            raise UploadRefusedError(
                f"cannot look at {where} in the container: {error.strerror or error}"
            ) from None
        return True

    def commit(self, staged: dict[str, str], directories: dict[str, float]) -> None:
        """Rename every hidden name onto its destination; CommitError naming the first ones
        that could not be (those left are removed). ``directories``' modification times
        are set again after (tar, which succeeded, could set them). Blocking."""
        try:
            self._rename_all(staged)
        finally:
            self._set_times(directories)

    def _set_times(self, directories: dict[str, float]) -> None:
        for name, mtime in directories.items():
            parent, base = posixpath.split(posixpath.normpath(posixpath.join(self.path, name)))
            if not base:
                continue  # the container's root
            try:
                directory = open_in_root(self.root, parent.lstrip("/") or ".", os.O_PATH)
            except OSError:
                continue  # gone meanwhile: nothing to set
            try:
                facts = os.stat(base, dir_fd=directory, follow_symlinks=False)
                if stat.S_ISDIR(facts.st_mode):
                    times = (facts.st_atime_ns, int(mtime * 1_000_000_000))
                    os.utime(base, ns=times, dir_fd=directory, follow_symlinks=False)
            except OSError as error:
                log.debug("cp: the time of %s is not set again: %s", name, error)
            finally:
                os.close(directory)

    def _rename_all(self, staged: dict[str, str]) -> None:
        failed: list[str] = []
        for directory, name, hidden in self._each_or_missing(staged, failed):
            try:
                _refuse_sticky_replace(directory, name, hidden)
                os.rename(hidden, name, src_dir_fd=directory, dst_dir_fd=directory)
            except OSError as error:
                failed.append(f"{name}: {error.strerror or error}")
                _unlink_quietly(directory, hidden)
        if failed:
            more = f" (and {len(failed) - MAX_MEMBER_ERRORS} more)" * (
                len(failed) > MAX_MEMBER_ERRORS
            )
            raise CommitError("; ".join(failed[:MAX_MEMBER_ERRORS]) + more)

    def discard(self, staged: dict[str, str]) -> None:
        """Remove every hidden name that exists. Blocking."""
        for directory, _, hidden in self._each_or_missing(staged, []):
            _unlink_quietly(directory, hidden)

    def _each_or_missing(
        self, staged: dict[str, str], failed: list[str]
    ) -> Iterator[tuple[int, str, str]]:
        """``(directory fd, destination's name, hidden name)`` of each staged member, the
        descriptor open for that step only; a directory that cannot be opened is noted in
        ``failed`` (unless it does not exist: tar never got there) and skipped."""
        for destination, hidden in staged.items():
            try:
                directory = self._open(posixpath.dirname(destination))
            except OSError as error:
                if error.errno != errno.ENOENT:  # none: tar never got there
                    failed.append(f"{destination}: {error.strerror or error}")
                continue
            try:
                yield directory, posixpath.basename(destination), posixpath.basename(hidden)
            finally:
                os.close(directory)


def _refuse_sticky_replace(directory: int, name: str, hidden: str) -> None:
    """The kernel's rule for a sticky directory (``/tmp``), which kukeond (root) is not held
    to: only the file's or the directory's owner may replace a file in it."""
    facts = os.fstat(directory)
    if not facts.st_mode & stat.S_ISVTX:
        return
    writer = os.stat(hidden, dir_fd=directory, follow_symlinks=False).st_uid
    try:
        owner = os.stat(name, dir_fd=directory, follow_symlinks=False).st_uid
    except FileNotFoundError:
        return
    if writer not in (owner, facts.st_uid):
        raise PermissionError(errno.EPERM, "another user's file in a sticky directory")


def _unlink_quietly(directory: int, hidden: str) -> None:
    try:
        os.unlink(hidden, dir_fd=directory)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("cp: cannot remove the staged file %s: %s", hidden, error)


class _FifoSink(io.RawIOBase):
    """tar's stdin as the rewriting thread writes it: each write is the event loop's
    ``write_all`` (its stall deadline kept), waited for by the thread."""

    def __init__(self, fd: int, within: float, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.fd, self.within, self.loop = fd, within, loop
        self.pending: concurrent.futures.Future[None] | None = None
        self.stopped = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.stopped:
            raise BrokenPipeError(errno.EPIPE, "the copy ended")
        self.pending = asyncio.run_coroutine_threadsafe(
            write_all(self.fd, bytes(data), within=self.within), self.loop
        )
        if self.stopped:  # stop() ran meanwhile and may not have seen this one
            self.pending.cancel()
        self.pending.result()
        return len(data)

    def stop(self) -> None:
        """No more writes (the session ends): the one waiting is cancelled."""
        self.stopped = True
        if self.pending is not None:
            self.pending.cancel()


class StagingWriter:
    """An upload's frames carried to tar's stdin through :meth:`StagedUpload.rewrite`, run
    in a thread fed by a pipe (so a client is held to tar's pace, as without staging)."""

    def __init__(self, upload: StagedUpload, stdin_fd: int, *, within: float, chunk: int):
        self.upload, self.within = upload, within
        self._read_fd, self._write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self._write_fd, False)
        self._sink = _FifoSink(stdin_fd, within, asyncio.get_running_loop())
        self._rewriting = asyncio.ensure_future(asyncio.to_thread(self._rewrite, chunk))

    def _rewrite(self, chunk: int) -> None:
        with os.fdopen(self._read_fd, "rb", buffering=chunk) as source:
            self.upload.rewrite(source, self._sink, chunk)

    async def feed(self, payload: bytes) -> None:
        """Pass a frame on; the rewriting's error once it stopped (a refused stream, tar
        not reading: InputStalledError)."""
        try:
            await write_all(self._write_fd, payload, within=self.within)
        except OSError:
            await self._rewriting  # it stopped reading: its error says why
            raise UploadRefusedError("the stream went on after its end") from None

    async def finish(self) -> None:
        """The client's stream ended: wait until all of it is rewritten and written."""
        self._close_input()
        await self._rewriting

    def _close_input(self) -> None:
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1

    async def close(self) -> None:
        """End the rewriting, whatever it was doing, and wait for its thread (its input
        closed and its writes refused, it ends at once; a thread cannot be cancelled)."""
        self._close_input()
        self._sink.stop()
        await wait_ended(self._rewriting)


@dataclass(frozen=True)
class UploadJournal:
    """Where an upload notes what it stages, for a kukeond killed before the upload's end:
    JSON lines, the first ``{"namespace", "container", "unpackIn", "token"}``, then each
    destination (a member's normalised path) before tar is given it."""

    path: Path
    namespace: str
    container: str

    def open(self, unpack_in: str, token: str) -> IO[str]:
        """Create the journal with its first line, on disk (file and directory flushed, as
        every state file kukeond writes: ``write_atomically``); the file, open to append,
        line-buffered (`StagedUpload.sync_journal` flushes the names). Blocking."""
        directory = self.path.parent
        made = not directory.exists()
        make_dirs(directory)
        if made:
            sync_directory(directory.parent)  # the journals' directory itself is kept
        head = {"namespace": self.namespace, "container": self.container}
        line = json.dumps({**head, "unpackIn": unpack_in, "token": token}) + "\n"
        write_atomically(self.path, line, mode=0o600)
        try:
            descriptor = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except OSError:
            self.path.unlink(missing_ok=True)
            raise
        return os.fdopen(descriptor, "a", encoding="ascii", buffering=1)


class Upload:
    """One copy into a container, staged: started once tar runs, fed the client's frames,
    committed when tar succeeded, and closed (its staged files removed unless committed)."""

    def __init__(
        self,
        unpack_in: str,
        journal: UploadJournal | None = None,
        *,
        copy: tuple[str, str] | None = None,
    ) -> None:
        self.unpack_in = unpack_in
        """The directory tar unpacks in, absolute as the container sees it."""
        self.copy = copy
        """``(top, name)``: the stream is one file or directory, ``top`` (the destination's
        last component); when ``top`` is a directory in the container already, the copy
        goes inside it as ``top/name``, as docker's and kubectl's cp put it."""
        self.staging = StagedUpload()
        self._journal = journal
        self._root: int | None = None
        self._writer: StagingWriter | None = None
        self._committed = False

    async def start(self, pid: int, stdin_fd: int, *, within: float, chunk: int) -> None:
        """Open the journal and tar's root (``pid``: tar, running), start the rewriting.
        UploadRefusedError when the journal cannot be written."""
        if self._journal is not None:
            try:
                self.staging.journal = await asyncio.to_thread(
                    self._journal.open, self.unpack_in, self.staging.token
                )
            except OSError as error:
                raise UploadRefusedError(
                    "kukeond cannot note the upload in its state directory: "
                    f"{error.strerror or error}"
                ) from None
        try:
            self._root = await asyncio.to_thread(open_root, pid)
        except OSError as error:  # tar has exited already: its status says why
            log.info("cp: the root of tar (pid %d) cannot be opened: %s", pid, error)
        if self.copy is not None:
            self.staging.moved = await asyncio.to_thread(self._placement, *self.copy)
        self._writer = StagingWriter(self.staging, stdin_fd, within=within, chunk=chunk)

    async def feed(self, payload: bytes) -> None:
        """A frame of the stream (empty: its end, once all of it reached tar)."""
        assert self._writer is not None
        with contextlib.suppress(OSError):  # tar stopped reading: its status says why
            await (self._writer.feed(payload) if payload else self._writer.finish())

    def _placement(self, top: str, name: str) -> tuple[str, str]:
        """Where the copy ``top`` goes: inside ``top`` when it is a directory in the
        container, looked at by kukeond through tar's root before tar is given a byte (tar
        then writes through the same names, in the same root). Blocking."""
        if self._root is not None and self._directory().is_directory(top):
            return top, posixpath.join(top, name)
        return top, top

    def _directory(self) -> ContainerDirectory:
        if self._root is None:
            raise CommitError("the container's root could not be opened while tar ran")
        return ContainerDirectory(self._root, self.unpack_in)

    async def commit(self) -> None:
        """Rename the staged files into place (tar exited 0); CommitError for those that
        could not be."""
        if self.staging.staged:
            await asyncio.to_thread(
                self._directory().commit, self.staging.staged, self.staging.directories
            )
        self._committed = True

    async def close(self) -> None:
        """End the rewriting and remove what is staged, unless committed, then the journal,
        in one thread job: a kukeond stopping (SIGTERM) cancels this handler, and a second
        hop to a thread after the removal was left undone at exit, the journal kept for
        files already gone. A job once started ends before kukeond exits (asyncio.run waits
        for its executor). Call once tar can write no more (exited or killed)."""
        if self._writer is not None:
            await self._writer.close()
        root, self._root = self._root, None
        await asyncio.to_thread(self._end, root)

    def _end(self, root: int | None) -> None:
        """What ``close`` does once the rewriting ended. Blocking."""
        try:
            if not self._committed and root is not None and self.staging.staged:
                ContainerDirectory(root, self.unpack_in).discard(self.staging.staged)
        finally:
            if root is not None:
                os.close(root)
            self._forget_journal()

    def _forget_journal(self) -> None:
        """Nothing staged is left to remove: the journal goes. Blocking."""
        if self.staging.journal is not None:
            with contextlib.suppress(OSError):
                self.staging.journal.close()
            self.staging.journal = None
            if self._journal is not None:
                self._journal.path.unlink(missing_ok=True)
