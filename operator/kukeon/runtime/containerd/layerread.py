"""Reading an image layer's entries as its blob streams from the content store.

kukeond reads a few things out of an image without mounting it: its /etc/passwd and
/etc/group (``userdb``), whether it has a program (``imagefs``). A layer can be GiBs once
decompressed (CUDA and ML images), or a gzip bomb, and a realm editor chooses the image:
reading a blob whole, inflating it whole and indexing every member held all of it in
kukeond's memory at once. Here a layer is read through ``ContentStore.read_through``
(1 MiB of blob at a time, in a worker thread), inflated by ``layersize.LayerMeter``
(a step of at most 1 MiB at a time, concatenated gzip members and zstd frames as
containerd reads them, stopped past a bound) and its tar parsed as it arrives by
:class:`TarStream`, which hands each member's header to a :class:`TarVisitor` and keeps
only the content the visitor asks for: memory stays a few MiB whatever the layer's size.

The bound on what one read inflates is the layer's counted size (``LABEL_UNPACKED_SIZE``,
kept on its blob once unpacking counted it), else ``UNLABELLED_LAYER_MAX_BYTES``: a bomb
recorded before layers were counted cannot spin kukeond's CPU for long either.

Everything that goes wrong is a :class:`LayerReadError` (a ``ValueError``): the callers
treat the layer as unreadable (numeric users still work; "let the runtime tell").

``count_layer`` is the one pass unpacking makes over a layer before containerd applies it:
its bytes (``LayerMeter``) and, through the same ``TarStream``, the inodes its entries
create (``EntryCounter``), each stopped at the room unpacking has.

Every read holds the window its zstd frames need from kukeond's budget of zstd windows
(``zstdwindow``) while it decompresses: taken on the event loop once the first chunk told
it, the read then starting over (``_read_held``).
"""

from __future__ import annotations

import asyncio
import posixpath
import tarfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, TypeVar

from kukeon.runtime.containerd.archivesize import IMAGE_IMPORT_MAX_BYTES
from kukeon.runtime.containerd.archivetar import EXTENSION_TYPES, MAX_EXTENSION_HEADER_BYTES
from kukeon.runtime.containerd.layersize import (
    LABEL_UNPACKED_ENTRIES,
    LABEL_UNPACKED_SIZE,
    LayerMeter,
    LayerTooLargeError,
    LayerTooManyEntriesError,
    LayerUnreadableError,
    Room,
    _Corrupt,
    _Exceeded,
)
from kukeon.runtime.containerd.oci import Descriptor
from kukeon.runtime.containerd.zstdwindow import (
    WindowHold,
    WindowNeeded,
    WindowTooLargeError,
    holding,
)

if TYPE_CHECKING:
    from kukeon.runtime.containerd.content import ContentInfo

UNLABELLED_LAYER_MAX_BYTES: Final = IMAGE_IMPORT_MAX_BYTES
"""What reading a layer whose size was never counted may inflate: what one import may."""
_BLOCK: Final = tarfile.BLOCKSIZE
_SPARSE_EXTENDED_AT: Final = 482
"""An old GNU sparse header's 'isextended' byte: sparse-map blocks follow it."""
_SPARSE_BLOCK_EXTENDED_AT: Final = 504


class _Feedable(Protocol):
    def feed(self, chunk: bytes) -> None: ...


_Sink = TypeVar("_Sink", bound=_Feedable)
_Visitor = TypeVar("_Visitor", bound="TarVisitor")
_Held = TypeVar("_Held", bound="_HeldSink")
_Result = TypeVar("_Result")


class LayerReadError(ValueError):
    """A layer that cannot be read: corrupt, truncated, too large."""


class StopReading(Exception):  # noqa: N818 - a signal, not a failure
    """Raised by a visitor that has what it wants from the layer: the read ends there."""


class Member(NamedTuple):
    """A tar member as a layer's reader needs it."""

    name: str
    """Relative, normalised: ``etc/passwd`` for ``./etc/passwd`` or ``/etc/passwd``."""
    kind: str
    """``file``, ``hardlink``, ``dir``, ``symlink`` or ``other``."""
    linkname: str
    size: int


class TarVisitor(Protocol):
    def member(self, member: Member) -> int:
        """Called for each member, in the tar's order: how many bytes of its content to
        hand to ``content`` (0: none; more: ``content`` is called, with ``b""`` for an
        empty member). May raise ``StopReading``."""

    def content(self, member: Member, data: bytes) -> None:
        """The first bytes of ``member`` that ``member`` asked for (all it has, if fewer)."""


class BlobReader(Protocol):
    """What streams a blob: containerd's ``ContentStore``."""

    async def read_through(self, digest: str, start: Callable[[], _Sink]) -> _Sink: ...


class LayerSource(BlobReader, Protocol):
    """Where layer blobs are read from: containerd's ``ContentStore``."""

    async def info(self, digest: str) -> ContentInfo: ...


class ImageLayer(NamedTuple):
    """A layer blob as the manifest lists it."""

    media_type: str
    digest: str


def normalised(name: str) -> str:
    return posixpath.normpath(name.lstrip("/")).removeprefix("./")


def _kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.isdir():
        return "dir"
    return "file" if info.isreg() else "other"


def _pax_records(data: bytes) -> dict[str, str]:
    """A pax extended header's ``length key=value\\n`` records."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data) and data[position] != 0:
        space = data.find(b" ", position)
        length = data[position:space]
        if space < 0 or not length.isdigit() or int(length) <= space - position + 1:
            raise LayerReadError(f"a malformed pax header record at byte {position}")
        record = data[space + 1 : position + int(length)]
        key, equals, value = record.rstrip(b"\n").partition(b"=")
        if not equals:
            raise LayerReadError(f"a pax header record without '=' at byte {position}")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += int(length)
    return records


class TarStream:
    """Fed a tar stream's bytes in order (``feed``), parses its headers as tarfile does
    (ustar, GNU long names and old sparse maps, pax ``path``/``linkpath``/``size``) and hands
    each member to ``visitor``. Holds at most a header block, an extension header (at most
    ``MAX_EXTENSION_HEADER_BYTES``) and the content the visitor asked for."""

    def __init__(self, visitor: TarVisitor) -> None:
        self._visitor = visitor
        self._pending = bytearray()
        self._need = _BLOCK
        self._state = "header"
        self._skip = 0
        self._member: Member | None = None
        self._wanted = 0
        self._content = bytearray()
        self._rest = 0
        """Of the member's data (and padding) after the wanted content: skipped."""
        self._extension_type = b""
        self._long_name: str | None = None
        self._long_link: str | None = None
        self._pax: dict[str, str] = {}
        self._header: tarfile.TarInfo | None = None
        self.ended = False
        """The end-of-archive block was read."""

    def feed(self, data: bytes) -> None:
        position = 0
        while position < len(data) and not self.ended:
            if self._skip:
                taken = min(self._skip, len(data) - position)
                position += taken
                self._skip -= taken
                continue
            if self._state == "content":
                taken = min(self._wanted - len(self._content), len(data) - position)
                self._content += data[position : position + taken]
                position += taken
                if len(self._content) == self._wanted:
                    self._content_done()
                continue
            taken = min(self._need - len(self._pending), len(data) - position)
            self._pending += data[position : position + taken]
            position += taken
            if len(self._pending) == self._need:
                block = bytes(self._pending)
                self._pending.clear()
                self._parsed(block)

    def finish(self) -> None:
        """The stream ended: an error when it ends inside a member."""
        if self.ended or (self._state == "header" and not self._pending and not self._skip):
            return
        raise LayerReadError("its tar stream ends inside a member (truncated)")

    def _parsed(self, block: bytes) -> None:
        if self._state == "header":
            self._on_header(block)
        elif self._state == "extension":
            self._on_extension(block)
        else:  # "sparse": an old GNU sparse map's continuation block
            if not block[_SPARSE_BLOCK_EXTENDED_AT]:
                self._start_data()

    def _on_header(self, block: bytes) -> None:
        if block.count(0) == _BLOCK:
            self.ended = True  # what follows is padding
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as error:
            raise LayerReadError(f"a tar header that does not parse: {error}") from None
        size = info.size
        if info.type in EXTENSION_TYPES:
            if size > MAX_EXTENSION_HEADER_BYTES:
                raise LayerReadError(f"a tar extension header of {size} bytes")
            self._extension_type, self._wanted = info.type, size
            if size:
                self._state, self._need = "extension", _padded(size)
            else:
                self._on_extension(b"")
            return
        self._header = info
        if info.type == tarfile.GNUTYPE_SPARSE and block[_SPARSE_EXTENDED_AT]:
            self._state, self._need = "sparse", _BLOCK
            return
        self._start_data()

    def _on_extension(self, block: bytes) -> None:
        data = block[: self._wanted]
        if self._extension_type == tarfile.GNUTYPE_LONGNAME:
            self._long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif self._extension_type == tarfile.GNUTYPE_LONGLINK:
            self._long_link = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif self._extension_type != tarfile.XGLTYPE:  # a global header names no member
            self._pax.update(_pax_records(data))
        self._state, self._need = "header", _BLOCK

    def _start_data(self) -> None:
        info = self._header
        assert info is not None
        pax, self._pax = self._pax, {}
        # GNU tar's pax sparse files are stored under a made-up path ("GNUSparseFile.N/x");
        # their name is GNU.sparse.name, as tarfile and Go's archive/tar (containerd) read it.
        name = self._long_name or pax.get("GNU.sparse.name") or pax.get("path") or info.name
        linkname = self._long_link or pax.get("linkpath") or info.linkname
        self._long_name = self._long_link = None
        size = info.size
        if "size" in pax:
            if not pax["size"].isdigit():
                raise LayerReadError(f"a pax size {pax['size']!r} that is not a number")
            size = int(pax["size"])
        # tarfile's rule: only regular files and unknown types have data after the header.
        has_data = info.isreg() or info.type not in tarfile.SUPPORTED_TYPES
        stored = size if has_data else 0
        member = Member(normalised(name), _kind(info), linkname, stored)
        asked = self._visitor.member(member)
        wanted = min(asked, stored)
        self._state, self._need = "header", _BLOCK
        if wanted > 0:
            self._member, self._wanted = member, wanted
            self._content.clear()
            self._state = "content"
            self._rest = _padded(stored) - wanted
        else:
            self._skip = _padded(stored)
            if asked > 0:
                # An empty file asked for is handed over empty: it is a file (an empty
                # /etc/passwd over a lower one is what overlayfs shows), not nothing.
                self._visitor.content(member, b"")

    def _content_done(self) -> None:
        member = self._member
        assert member is not None
        data = bytes(self._content)
        self._content.clear()
        self._state, self._skip, self._member = "header", self._rest, None
        self._visitor.content(member, data)


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


class _HeldSink:
    """What ``read_through`` feeds: inflation (bounded, with the window ``hold`` holds) into
    the tar parser, each step bracketed so that the hold knows a step is running."""

    def __init__(self, visitor: TarVisitor, limit: int, hold: WindowHold) -> None:
        self.tar = TarStream(visitor)
        self.meter = LayerMeter(limit, out=self.tar.feed, window=hold.bytes)
        self._hold = hold
        hold.decoding(self.meter)

    def feed(self, chunk: bytes) -> None:
        with self._hold.feeding():
            self.meter.feed(chunk)

    def finish(self) -> None:
        """Once every chunk was fed (in the worker thread too: it may decompress)."""
        with self._hold.feeding():
            self.meter.finish()
        self.tar.finish()


async def _read_held(
    source: BlobReader,
    digest: str,
    start: Callable[[WindowHold], _Held],
    finish: Callable[[_Held], _Result],
) -> _Result:
    """Stream blob ``digest`` through a sink ``start(hold)`` makes, then ``finish`` it in a
    worker thread, holding from kukeond's budget the zstd window the sink's meter needs.
    The first read holds none: its meter raises ``WindowNeeded`` at the first zstd frame's
    header (having decompressed nothing), the window is taken here, on the event loop, and
    the blob read again (a gzip or plain layer is read once). ``WindowTooLargeError`` for a
    window past the whole budget."""
    async with holding() as hold:
        while True:
            try:
                sink = await source.read_through(digest, lambda: start(hold))
            except WindowNeeded as needed:
                await hold.grow(needed.window)
                continue
            return await asyncio.to_thread(finish, sink)


class _LayerSink(_HeldSink):
    def feed(self, chunk: bytes) -> None:
        if self.tar.ended:
            return  # only padding and the gzip or zstd trailer are left
        super().feed(chunk)

    def finish(self) -> None:
        if self.tar.ended:
            return
        super().finish()


async def read_layer(source: LayerSource, digest: str, start: Callable[[], _Visitor]) -> _Visitor:
    """Stream layer ``digest``'s tar through a visitor ``start()`` makes (a new one when the
    read starts over, containerd having gone away midway), and return it once the tar ends
    or it raises ``StopReading``. Anything unreadable is a ``LayerReadError``."""
    counted = (await source.info(digest)).labels.get(LABEL_UNPACKED_SIZE, "")
    limit = int(counted) if counted.isdigit() else UNLABELLED_LAYER_MAX_BYTES
    visitors: list[_Visitor] = []

    def sink(hold: WindowHold) -> _LayerSink:
        visitors.append(start())
        return _LayerSink(visitors[-1], limit, hold)

    try:
        await _read_held(source, digest, sink, _LayerSink.finish)
    except StopReading:
        pass
    except _Exceeded:
        raise LayerReadError(
            f"layer {digest} inflates past {limit} bytes"
            + (" (its counted size)" if counted.isdigit() else "")
        ) from None
    except (_Corrupt, WindowTooLargeError) as error:
        raise LayerReadError(f"layer {digest} cannot be read: {error}") from None
    return visitors[-1]


# --- counting a layer before it is unpacked ---------------------------------------------


class _TooManyEntries(Exception):  # noqa: N818 - internal signal, turned into an error
    """Counting passed the inode limit (raised from inside the tar parser)."""


class EntryCounter:
    """A visitor that counts, at most, the inodes a layer's members create: each member's
    path components the previous member's path does not share. Parents a tar does not list
    are created too (counted so); a tar lists a directory's members together, so the count
    is close to the truth (a member, a directory revisited later, counts its parents again).
    A hard link takes no inode but is counted: a safe upper bound, and links are few."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries = 0
        self._previous: list[str] = []

    def member(self, member: Member) -> int:
        parts = [] if member.name in (".", "") else member.name.split("/")
        shared = 0
        for before, now in zip(self._previous, parts, strict=False):
            if before != now:
                break
            shared += 1
        if parts:  # the root's own entry creates nothing
            self.entries += max(1, len(parts) - shared)
        self._previous = parts
        if self.entries > self.limit:
            raise _TooManyEntries
        return 0

    def content(self, member: Member, data: bytes) -> None:
        """Never asked for (``member`` wants none)."""


class LayerCount(NamedTuple):
    """What a layer takes once unpacked."""

    bytes: int
    entries: int
    """The inodes it creates at most."""


NOTHING_COUNTED: Final = LayerCount(0, 0)


def known_count(labels: Mapping[str, str]) -> LayerCount | None:
    """The count kept on a layer blob's labels; None when it was not counted (or only its
    bytes were: before inodes were counted, or a zstd layer's ``uncounted`` from before zstd
    was decompressed here; it is counted again, once)."""
    size = labels.get(LABEL_UNPACKED_SIZE, "")
    entries = labels.get(LABEL_UNPACKED_ENTRIES, "")
    if not size.isdigit() or not entries.isdigit():
        return None
    return LayerCount(int(size), int(entries))


def count_labels(count: LayerCount) -> dict[str, str]:
    return {LABEL_UNPACKED_SIZE: str(count.bytes), LABEL_UNPACKED_ENTRIES: str(count.entries)}


class _CountingSink(_HeldSink):
    """What ``read_through`` feeds when counting: inflation (bounded) into the tar parser
    (bounded), every byte counted (the padding after the tar's end too)."""

    def __init__(self, bytes_limit: int, entries_limit: int, hold: WindowHold) -> None:
        self.counter = EntryCounter(entries_limit)
        super().__init__(self.counter, bytes_limit, hold)

    def count(self) -> LayerCount:
        self.finish()
        return LayerCount(self.meter.unpacked, self.counter.entries)


async def count_layer(
    content: BlobReader,
    *,
    image: str,
    layer: Descriptor,
    room: Room,
    before: LayerCount = NOTHING_COUNTED,
) -> LayerCount:
    """What ``layer`` takes once unpacked, its bytes and the inodes its entries create,
    read once from the content store in a worker thread. ``LayerTooLargeError`` or
    ``LayerTooManyEntriesError`` as soon as ``before`` (what the unpack's earlier layers
    take) and it pass ``room``; ``LayerUnreadableError`` when its stream or its tar is
    corrupt or cut short (containerd could not apply it either)."""
    sinks: list[_CountingSink] = []

    def start(hold: WindowHold) -> _CountingSink:
        sinks.append(_CountingSink(room.bytes - before.bytes, room.entries - before.entries, hold))
        return sinks[-1]

    try:
        return await _read_held(content, layer.digest, start, _CountingSink.count)
    except _Exceeded:
        raise LayerTooLargeError(
            image=image,
            layer=layer.digest,
            size=layer.size,
            inflated=sinks[-1].meter.unpacked,
            room=room.bytes,
            why=room.why,
            counted_before=before.bytes,
        ) from None
    except _TooManyEntries:
        raise LayerTooManyEntriesError(
            image=image,
            layer=layer.digest,
            entries=sinks[-1].counter.entries,
            room=room.entries,
            why=room.entries_why,
            counted_before=before.entries,
        ) from None
    except (_Corrupt, LayerReadError, WindowTooLargeError) as error:
        reason = str(error)
        raise LayerUnreadableError(image=image, layer=layer.digest, reason=reason) from None
