"""tarfile, bounded for the tars a user sends kukeond: image archives (``imagearchive``)
and ``kukectl cp`` uploads (``daemon/cpstage``, :func:`open_stream_tar`).

kukeond (root) reads an imported archive's headers with tarfile, whose reading of them is
bounded by nothing but the archive: a GNU long name or a pax header is read whole into
memory (a gzip of a few KiB can hold one of GiBs: a 400 KiB upload took kukeond's memory
to 2.8 GB); every header read is kept (~500 bytes each: 100,000 empty entries, 630 KiB
gzipped, held 50 MB, and ``imageImportMaxBytes`` allows 33 million); a sparse entry is
read back as its full size of zeros (a 12 KiB archive named an 8 GiB layer, written whole
into the content store past ``imageImportMaxBytes``), its map of any length kept in
memory. :func:`open_archive_tar` opens an archive with these refused before tarfile
reads them (:class:`ArchiveTarError`):

- long names and pax headers past ``MAX_EXTENSION_BYTES``, all of the archive's together,
  or more than ``MAX_EXTENSION_RUN`` of them in a row (tarfile reads each one's member by
  recursion: a chain of empty long names was a RecursionError);
- more than ``MAX_ENTRIES`` entries (``read_entries``);
- sparse entries (GNU's old sparse type, and pax sparse files of GNU's 0.0, 0.1 and 1.0
  formats): no OCI layout writer stores its blobs sparse.

An upload's stream (:func:`open_stream_tar`) is bounded a header at a time
(``MAX_EXTENSION_HEADER_BYTES``, and the run), keeps no header once passed (tarfile kept
each, reading and writing: ~1 KB for each member of a copy), and is written out whole
where it is sparse, as tar in the container would write it.

The sparse formats are refused where tarfile parses each, in its private ``_proc_*``
steps (CPython 3.11's names); ``tests/unit/runtime/test_archive_tar.py`` builds each
format and fails should a later tarfile name them otherwise.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from _typeshed import SupportsRead

MAX_EXTENSION_BYTES: Final = 16 * 1024 * 1024
"""GNU long names and pax headers, all of an image archive's together: real ones are a
path."""
MAX_EXTENSION_HEADER_BYTES: Final = 1024 * 1024
"""One GNU long name or pax header, in any tar kukeond reads: real ones are a path."""
MAX_EXTENSION_RUN: Final = 8
"""Long names and pax headers in a row, for one member: GNU's long name and long link, a
pax global header and the member's own make four."""
MAX_ENTRIES: Final = 65_536
"""An image layout holds a few entries per blob: thousands for the largest archives."""
EXTENSION_TYPES: Final = frozenset(  # headers that name or describe the member after them
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)


class ArchiveTarError(Exception):
    """A header tarfile is not asked to read: too large, too many, or sparse."""


def _sparse(name: str) -> ArchiveTarError:
    return ArchiveTarError(
        f"{name[:200]!r} is stored sparse (tar --sparse): its holes would be written out "
        "whole; archive the image without --sparse"
    )


class _BoundedTarInfo(tarfile.TarInfo):
    """A header as tarfile reads it, counted (`_BoundedTarFile.count_header`) first."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo | None:
        if isinstance(tar, _BoundedTarFile):
            tar.count_header(self)
        result: tarfile.TarInfo | None = super()._proc_member(tar)  # type: ignore[misc]
        return result


class _ImageTarInfo(_BoundedTarInfo):
    """A header of an image archive: sparse entries refused."""

    # tarfile's steps for each sparse format: the old GNU type's header and map blocks,
    # and the pax formats' maps (in the pax header, or ahead of the data for 1.0).
    def _proc_sparse(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        raise _sparse(self.name)

    def _pax_sparse(
        self, member: tarfile.TarInfo, pax_headers: Mapping[str, str], *_: object
    ) -> None:
        raise _sparse(pax_headers.get("GNU.sparse.name", member.name))

    _proc_gnusparse_00 = _proc_gnusparse_01 = _proc_gnusparse_10 = _pax_sparse


class _BoundedTarFile(tarfile.TarFile):
    tarinfo = _BoundedTarInfo
    extension_bytes_max: int | None = None
    """Long names and pax headers, all of the archive's together (None: each bounded)."""
    extension_bytes = 0
    """Of long names and pax headers read so far."""
    extension_run = 0
    """Long names and pax headers read since the last member's own header."""

    def count_header(self, header: tarfile.TarInfo) -> None:
        """Count a header tarfile is about to process; ArchiveTarError past the bounds."""
        if header.type not in EXTENSION_TYPES:
            self.extension_run = 0
            return
        self.extension_bytes += header.size
        self.extension_run += 1
        if header.size > MAX_EXTENSION_HEADER_BYTES:
            raise ArchiveTarError(f"a long name or pax header of {header.size} bytes")
        limit = self.extension_bytes_max
        if limit is not None and self.extension_bytes > limit:
            raise ArchiveTarError(f"its long names and pax headers take more than {limit} bytes")
        if self.extension_run > MAX_EXTENSION_RUN:
            raise ArchiveTarError(
                f"more than {MAX_EXTENSION_RUN} long names or pax headers in a row"
            )


class _ImageTarFile(_BoundedTarFile):
    tarinfo = _ImageTarInfo
    extension_bytes_max = MAX_EXTENSION_BYTES


class _StreamTarFile(_BoundedTarFile):
    """A tar stream read or written once through: no header is kept once passed."""

    members: list[tarfile.TarInfo]  # tarfile's, not in typeshed

    def next(self) -> tarfile.TarInfo | None:
        member = super().next()
        self.members.clear()
        return member

    def addfile(self, tarinfo: tarfile.TarInfo, fileobj: SupportsRead[bytes] | None = None) -> None:
        super().addfile(tarinfo, fileobj)
        self.members.clear()


def open_archive_tar(path: Path) -> tarfile.TarFile:
    """``tarfile.open(path, "r:*")`` with its headers bounded and sparse entries refused:
    raises ArchiveTarError (tarfile's own errors as ``tarfile.open``), the file closed."""
    return _ImageTarFile.open(path, mode="r:*")


def open_stream_tar(
    fileobj: IO[bytes] | io.RawIOBase, mode: Literal["r|", "w|"], *, bufsize: int
) -> tarfile.TarFile:
    """``tarfile.open(fileobj=..., mode="r|"/"w|")`` (pax, for writing), keeping no header
    it passed, each long name and pax header bounded (ArchiveTarError while reading)."""
    return _StreamTarFile.open(
        fileobj=fileobj, mode=mode, bufsize=bufsize, format=tarfile.PAX_FORMAT
    )


def read_entries(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The archive's entries in order; ArchiveTarError past MAX_ENTRIES."""
    for number, member in enumerate(tar, start=1):
        if number > MAX_ENTRIES:
            raise ArchiveTarError(f"it holds more than {MAX_ENTRIES} entries")
        yield member
