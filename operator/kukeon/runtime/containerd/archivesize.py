"""How large an image archive is once decompressed, measured as it arrives.

An archive is read in place (``imagearchive``), but each blob it holds is written whole
into containerd's content store: a gzip, bzip2 or xz archive of a few MiB can hold
terabytes of zeros (a "gzip bomb"), and the import wrote them all to the disk before any
check failed. ``ArchiveMeter`` is fed the archive's bytes as they are received and
decompresses them in bounded steps, counting, without keeping them: past ``limit`` bytes,
sent or decompressed, it raises ``ArchiveTooLargeError``, before anything is imported.
Blobs the import writes are within the tar, so within the limit.

The compression is told from the first bytes as ``tarfile.open(mode="r:*")`` tells it
(plain, gzip, bzip2, xz); streams concatenated one after another (``cat a.gz b.gz``, which
gzip and tarfile read as one) are counted one after another. A stream that does not
decompress is counted no further: tarfile will not read past where it breaks either, and
the import refuses it as no archive.
"""

from __future__ import annotations

import bz2
import logging
import lzma
import zlib
from collections.abc import Callable
from typing import Final, Protocol, TypeAlias

log = logging.getLogger(__name__)

IMAGE_IMPORT_MAX_BYTES: Final = 16 * 1024**3
"""An imported archive's default bound, as sent and decompressed (kukeond's
``imageImportMaxBytes``): larger than most images, whose layers are stored compressed."""
STEP_BYTES: Final = 1 << 20
"""Decompressed at most this many bytes at a time: a chunk of a bomb never becomes more
than this in memory."""

_GZIP_MAGIC: Final = b"\x1f\x8b"
_BZIP2_MAGIC: Final = b"BZh"
_XZ_MAGIC: Final = b"\xfd7zXZ\x00"
_MAGIC_BYTES: Final = 6


class ArchiveTooLargeError(Exception):
    """The archive, sent or decompressed, is larger than the limit."""

    def __init__(self, limit: int, *, decompressed: bool) -> None:
        self.limit = limit
        self.decompressed = decompressed
        how = "once decompressed " if decompressed else ""
        super().__init__(f"the image archive is larger than {limit} bytes {how}(the limit)")


Decompressor: TypeAlias = "zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor"


class SteppedDecompressor(Protocol):
    """A decompressor with an output bound and ``needs_input``, as bz2's, lzma's and zstd's
    (``layersize`` decompresses zstd layers in steps too); zlib's has neither."""

    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes: ...


_ZLIB_DECOMPRESS: Final = type(zlib.decompressobj())
"""zlib's decompressor type (typeshed's ``zlib._Decompress``; not a name zlib exports)."""


def _kind(head: bytes) -> str | None:
    """The compression ``head`` (the archive's first bytes) says, None for none."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    return None


def _decompressor(kind: str) -> Decompressor:
    if kind == "gzip":
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip's header and trailer
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


def decompress_counting(stream: Decompressor, data: bytes, count: Callable[[int], None]) -> None:
    """Decompress ``data`` through ``stream`` in steps of STEP_BYTES, discarding the output
    and passing each step's size to ``count`` (which stops it by raising); what follows the
    stream's end is left in its ``unused_data``."""
    decompress_steps(stream, data, lambda step: count(len(step)))


def decompress_steps(
    stream: zlib._Decompress | SteppedDecompressor, data: bytes, take: Callable[[bytes], None]
) -> None:
    """Decompress ``data`` through ``stream`` in steps of at most STEP_BYTES each handed to
    ``take`` (which stops it by raising), so no more than a step is ever held; what follows
    the stream's end is left in its ``unused_data``."""
    if isinstance(stream, _ZLIB_DECOMPRESS):
        take(stream.decompress(data, STEP_BYTES))
        while stream.unconsumed_tail and not stream.eof:
            take(stream.decompress(stream.unconsumed_tail, STEP_BYTES))
        return
    take(stream.decompress(data, STEP_BYTES))
    while not stream.eof and not stream.needs_input:
        take(stream.decompress(b"", STEP_BYTES))


class ArchiveMeter:
    """Fed an archive's bytes in order (``feed``), raises ``ArchiveTooLargeError`` as soon
    as they, or what they decompress to, pass ``limit`` bytes. Blocking work (up to a chunk's
    worth of decompression): feed it from a worker thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self.decompressed = 0
        self._head = b""
        self._kind: str | None = None
        self._stream: Decompressor | None = None
        self._broken = False
        """Counted no further (a plain tar, or a stream that stopped decompressing)."""

    def feed(self, chunk: bytes) -> None:
        self.sent += len(chunk)
        if self.sent > self.limit:
            raise ArchiveTooLargeError(self.limit, decompressed=False)
        if self._broken:
            return
        if self._kind is None:
            self._head += chunk
            if len(self._head) < _MAGIC_BYTES:
                return
            chunk, self._head = self._head, b""
            self._kind = _kind(chunk) or "plain"
        if self._kind == "plain":
            self._broken = True  # its size is what was sent
            return
        try:
            self._inflate(chunk)
        except (zlib.error, OSError, EOFError, lzma.LZMAError) as error:
            # tarfile stops where the stream breaks: nothing past it is imported.
            log.debug(
                "an archive's %s stream breaks after %d bytes: %s",
                self._kind,
                self.decompressed,
                error,
            )
            self._broken = True

    def _inflate(self, data: bytes) -> None:
        while data:
            if self._stream is None:
                data = data.lstrip(b"\0")  # gzip pads between and after streams with zeros
                if not data:
                    return
                if _kind(data) != self._kind and len(data) >= _MAGIC_BYTES:
                    self._broken = True  # what follows a stream is not another: not read
                    return
                self._stream = _decompressor(self._kind or "gzip")
            decompress_counting(self._stream, data, self._count)
            data = b""
            if self._stream.eof:
                data = self._stream.unused_data  # the next stream's, if any
                self._stream = None

    def _count(self, size: int) -> None:
        self.decompressed += size
        if self.decompressed > self.limit:
            raise ArchiveTooLargeError(self.limit, decompressed=True)
