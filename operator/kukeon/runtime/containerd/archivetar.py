"""tarfile, bounded for the image archives a realm editor sends (``imagearchive``).

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

The sparse formats are refused where tarfile parses each, in its private ``_proc_*``
steps (CPython 3.11's names); ``tests/unit/runtime/test_archive_tar.py`` builds each
format and fails should a later tarfile name them otherwise.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

MAX_EXTENSION_BYTES: Final = 16 * 1024 * 1024
"""GNU long names and pax headers, all of an archive's together: real ones are a path."""
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
    """A header as tarfile reads it, refusing what tarfile would hold without bound."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo | None:
        if isinstance(tar, _BoundedTarFile):
            tar.count_header(self)
        result: tarfile.TarInfo | None = super()._proc_member(tar)  # type: ignore[misc]
        return result

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
        if self.extension_bytes > MAX_EXTENSION_BYTES:
            raise ArchiveTarError(
                f"its long names and pax headers take more than {MAX_EXTENSION_BYTES} bytes"
            )
        if self.extension_run > MAX_EXTENSION_RUN:
            raise ArchiveTarError(
                f"more than {MAX_EXTENSION_RUN} long names or pax headers in a row"
            )


def open_archive_tar(path: Path) -> tarfile.TarFile:
    """``tarfile.open(path, "r:*")`` with its headers bounded: raises ArchiveTarError
    (tarfile's own errors as ``tarfile.open``), the file closed."""
    return _BoundedTarFile.open(path, mode="r:*")


def read_entries(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The archive's entries in order; ArchiveTarError past MAX_ENTRIES."""
    for number, member in enumerate(tar, start=1):
        if number > MAX_ENTRIES:
            raise ArchiveTarError(f"it holds more than {MAX_ENTRIES} entries")
        yield member
