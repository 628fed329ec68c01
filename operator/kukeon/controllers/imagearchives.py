"""The node's store of OCI archives given to `kukectl image import`, by the image names
they hold (an index file beside them), kept so that any realm can import an image on demand;
and the spellings an image name may have been recorded under."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kukeon.api.imageref import DOCKER_HUB
from kukeon.runtime.containerd.images import recorded_name
from kukeon.runtime.containerd.registry import InvalidReferenceError, parse_reference
from kukeon.runtime.hostfiles import PRIVATE_FILE_MODE, make_dirs, write_private_text

log = logging.getLogger(__name__)


def name_candidates(image: str) -> list[str]:
    """The names an image may be recorded under, in the order they are looked for: as
    written, normalised (what a pull and an import record), then the reference's other
    spellings an import recorded as written before imports normalised names
    (``busybox:1``, ``busybox`` for ``docker.io/library/busybox:latest``)."""
    try:
        reference = parse_reference(image)
    except InvalidReferenceError:
        return [image]
    bases = [reference.name]
    if reference.registry == DOCKER_HUB:
        bases.append(reference.repository.removeprefix("library/"))
    suffix = (f":{reference.tag}" if reference.tag else "") + (
        f"@{reference.digest}" if reference.digest else ""
    )
    untagged = reference.tag == "latest" and reference.digest is None
    spellings = [spelling for base in bases for spelling in (base + suffix, base)[: 1 + untagged]]
    return list(dict.fromkeys([image, str(reference), *spellings]))


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ImageArchives:
    """OCI archives on this node, by the image names they hold (an index file beside them)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._unrecorded: collections.Counter[str] = collections.Counter()
        """Stored archives an import is reading, not yet recorded or discarded: a record
        replacing the same file under a name, or a removal, must leave it be."""
        self._index_lock = asyncio.Lock()
        """One change of the index at a time: each reads it, changes it, writes it whole,
        then removes the archives its change left unnamed."""

    @property
    def _index_file(self) -> Path:
        return self.directory / "index.json"

    @property
    def incoming(self) -> Path:
        """Where the import route stages an archive as it is received."""
        return self.directory / "incoming"

    def remove_interrupted(self) -> list[Path]:
        """Remove what imports cut short by a crash left, which nothing else ever would:
        their staged archives, copies not yet named, and stored archives no name points at
        (a crash between a copy's naming, ``_store``, and the index's write, ``record``).
        Only at start, before any import runs; blocking (run in a thread)."""
        left = [
            *(self.incoming.glob("*.tar") if self.incoming.is_dir() else []),
            *(self.directory.glob("*.partial") if self.directory.is_dir() else []),
        ]
        try:
            named = set(self._read_index().values())
        except (OSError, ValueError) as error:  # kept: without the index none can be told
            log.warning("%s unreadable, archives kept: %s", self._index_file, error)
        else:
            stored = self.directory.glob("*.tar") if self.directory.is_dir() else []
            left += [path for path in stored if path.name not in named]
        for path in left:
            path.unlink(missing_ok=True)
        return left

    def _read_index(self) -> dict[str, str]:
        try:
            data = json.loads(self._index_file.read_text())
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _write_index(self, index: dict[str, str]) -> None:
        write_private_text(self._index_file, json.dumps(index, indent=2, sort_keys=True))

    def _store(self, source: Path) -> Path:
        make_dirs(self.directory)
        digest = hashlib.sha256()
        with source.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        target = self.directory / f"{digest.hexdigest()}.tar"
        if not target.exists():
            # A copy of its own: imports of the same bytes at once (in worker threads) each
            # write one, and the last rename wins with the same content.
            handle, name = tempfile.mkstemp(
                prefix=f"{digest.hexdigest()}.", suffix=".partial", dir=self.directory
            )
            partial = Path(name)
            try:
                with os.fdopen(handle, "wb") as written, source.open("rb") as read:
                    os.fchmod(written.fileno(), PRIVATE_FILE_MODE)  # a realm's private image
                    shutil.copyfileobj(read, written, 1 << 20)
                    # On disk before it is named: `record` then removes the archive it
                    # replaces, which must not leave a power loss with neither.
                    written.flush()
                    os.fsync(written.fileno())
                partial.replace(target)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            _sync_directory(self.directory)
        return target

    async def store(self, source: Path) -> Path:
        """Keep a copy of `source` (by content digest) until `record` or `discard` says
        what becomes of it; returns the stored path."""
        stored = await asyncio.to_thread(self._store, source)
        self._unrecorded[stored.name] += 1
        return stored

    def _done_with(self, archive: Path) -> None:
        self._unrecorded[archive.name] -= 1
        if self._unrecorded[archive.name] <= 0:
            del self._unrecorded[archive.name]

    def _unlink_unnamed(self, files: set[str], index: dict[str, str], busy: set[str]) -> None:
        """Remove those of ``files`` that no name of ``index`` points at and no import in
        progress (``busy``, stored and not yet recorded) is reading."""
        for file in files - set(index.values()) - busy:
            (self.directory / file).unlink(missing_ok=True)

    async def discard(self, archive: Path) -> None:
        """Remove a stored archive that no image name points at (an import that failed)."""
        self._done_with(archive)
        async with self._index_lock:
            await asyncio.to_thread(self._discard, archive, set(self._unrecorded))

    def _discard(self, archive: Path, busy: set[str]) -> None:
        self._unlink_unnamed({archive.name}, self._read_index(), busy)

    def _forget(self, names: Sequence[str], busy: set[str]) -> None:
        index = self._read_index()
        dropped = {name: index.pop(name) for name in names if name in index}
        if not dropped:
            return
        self._write_index(index)
        self._unlink_unnamed(set(dropped.values()), index, busy)

    async def forget(self, names: Sequence[str]) -> None:
        """Drop these names from the index; an archive no name points at any more goes."""
        async with self._index_lock:
            await asyncio.to_thread(self._forget, names, set(self._unrecorded))

    def _record(self, archive: Path, names: Sequence[str], busy: set[str]) -> None:
        index = self._read_index()
        replaced: set[str] = set()
        for name in [*names, *(key for key in index if recorded_name(key) in names)]:
            if index.get(name, archive.name) != archive.name:
                replaced.add(index[name])
            index[name] = archive.name
        self._write_index(index)
        # Only once the index names the new archive (written before, `_store`): a crash
        # in between leaves a file too many, never a name without its archive.
        self._unlink_unnamed(replaced, index, busy)

    async def record(self, archive: Path, names: Sequence[str]) -> None:
        """Keep ``archive`` for its images' ``names`` (normalised), and for another spelling
        of one of them kept before imports normalised names: that is found first. An
        archive these names pointed at before goes when no other name points at it (a
        new import of a tag replaces the old copy, not adds one beside it)."""
        self._done_with(archive)
        async with self._index_lock:
            await asyncio.to_thread(self._record, archive, names, set(self._unrecorded))

    async def find(self, image: str) -> Path | None:
        index = await asyncio.to_thread(self._read_index)
        for name in name_candidates(image):
            if name in index:
                path = self.directory / index[name]
                if await asyncio.to_thread(path.exists):
                    return path
        return None

    async def names(self) -> dict[str, str]:
        return await asyncio.to_thread(self._read_index)
