"""How large an image layer is once unpacked, counted before containerd unpacks it.

A layer is a tar, usually compressed, that containerd decompresses into a snapshot when
kukeond unpacks the image (Diff.Apply, ``images.ImageService.unpack``). Its compressed size
says nothing of what it writes: 10 MiB of gzip can be 10 GiB of zeros (a "gzip bomb"), and
a realm that may import or pull an image would fill the disk every realm of the node, and
the node itself, share. ``LayerMeter`` is fed the layer's blob as stored and tells, without
keeping anything, how many bytes its tar stream is, stopping as soon as that passes the
room it is given (``LayerTooLargeError``) instead of inflating the whole bomb.

The compression is told from the first bytes, as containerd's own decompression tells it
(not from the media type):

- gzip: decompressed in steps of ``archivesize.STEP_BYTES``, output discarded; members
  concatenated one after another are counted one after another (Go's reader reads them as
  one stream); anything else after a member, a stream that breaks or ends early, is a
  ``LayerUnreadableError`` (containerd could not apply it either);
- zstd: Python 3.11 has no zstd decompressor (nor does kukeon's environment). The frames
  are walked instead, block header to block header, without decompressing: a raw or RLE
  block regenerates exactly its stated size, a compressed one at most 128 KiB (the format's
  block maximum). The sum is an upper bound, within 128 KiB a frame of the truth for real
  data, and a bomb cannot hide from it (its blocks are what it inflates to);
- anything else: an uncompressed tar, its own size.

A layer's bytes are not all it takes: each of its tar entries is an inode, and a layer of
millions of empty files is a few MiB but exhausts the inodes of the snapshotter's
filesystem (every realm's containers, kukeond's state and logs then fail with ENOSPC).
``layerread.count_layer`` counts both in the one pass.

``UnpackLimits`` says how much room unpacking may take on a node, ``unpack_room`` works it
out for the filesystem holding the snapshotter's directory: bytes and inodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from kukeon.runtime.containerd.archivesize import STEP_BYTES, decompress_steps
from kukeon.runtime.containerd.errors import ContainerdError
from kukeon.runtime.containerd.oci import Descriptor

LABEL_UNPACKED_SIZE: Final = "kukeon.io/uncompressed-size"
"""On a layer's content blob: the bytes of its tar once decompressed, counted once (for a
zstd layer, the upper bound its block headers give)."""
LABEL_UNPACKED_ENTRIES: Final = "kukeon.io/unpacked-entries"
"""On a layer's content blob: the inodes its tar creates at most (``layerread.EntryCounter``),
counted with ``LABEL_UNPACKED_SIZE``; ``uncounted`` for a zstd layer (no decompressor)."""
UNCOUNTED_ENTRIES: Final = "uncounted"
UNBOUNDED: Final = 1 << 62
ZSTD_BLOCK_MAX: Final = 128 * 1024
"""The most one zstd block regenerates (RFC 8878, Block_Maximum_Size)."""

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = 0xFD2FB528
_SKIPPABLE_MIN: Final = 0x184D2A50
_SKIPPABLE_MAX: Final = 0x184D2A5F
_MAGIC_BYTES: Final = 4


class LayerRefusedError(ContainerdError):
    """A layer kukeond does not unpack: a cell naming its image fails ImageUnavailable."""


class LayerTooLargeError(LayerRefusedError):
    """A layer (or the layers of one unpack) would take more room than unpacking has."""

    def __init__(
        self,
        *,
        image: str,
        layer: str,
        size: int,
        inflated: int,
        room: int,
        why: str,
        counted_before: int = 0,
    ) -> None:
        self.image = image
        self.layer = layer
        self.size = size
        self.inflated = inflated
        self.room = room
        self.why = why
        before = f" after {counted_before} bytes of its earlier layers" if counted_before else ""
        super().__init__(
            f"image {image!r}: layer {layer} ({size} bytes compressed) inflates past "
            f"{inflated} bytes{before}, more than the {room} bytes unpacking may take ({why}); "
            "nothing of it was unpacked"
        )


class LayerTooManyEntriesError(LayerRefusedError):
    """A layer (or the layers of one unpack) would take more inodes than unpacking has."""

    def __init__(
        self, *, image: str, layer: str, entries: int, room: int, why: str, counted_before: int = 0
    ) -> None:
        self.image = image
        self.layer = layer
        self.entries = entries
        self.room = room
        self.why = why
        before = f" after {counted_before} of its earlier layers" if counted_before else ""
        super().__init__(
            f"image {image!r}: layer {layer} creates more than {entries} files and "
            f"directories{before}, more than the {room} inodes unpacking may take ({why}); "
            "nothing of it was unpacked"
        )


class LayerUnreadableError(LayerRefusedError):
    """A layer whose compressed stream is corrupt or cut short: it could not be unpacked."""

    def __init__(self, *, image: str, layer: str, reason: str) -> None:
        self.image = image
        self.layer = layer
        self.reason = reason
        super().__init__(f"image {image!r}: layer {layer} cannot be unpacked: {reason}")


class _Exceeded(Exception):  # noqa: N818 - internal signal, turned into LayerTooLargeError
    """Counting passed the limit (raised from inside the decompression loop)."""


class _Corrupt(Exception):  # noqa: N818 - internal signal, turned into LayerUnreadableError
    pass


class _Zstd:
    """Walks zstd frames by their headers; ``total`` is an upper bound of what they
    regenerate. Fed the bytes in order; holds at most one header's worth of them."""

    def __init__(self, count: Callable[[int], None]) -> None:
        self._count = count
        self._pending = bytearray()
        self._skip = 0
        self._state = "magic"
        self._checksum = False
        self.frames = 0

    def feed(self, data: bytes) -> None:
        self._pending += data
        position = 0
        while True:
            if self._skip:
                taken = min(self._skip, len(self._pending) - position)
                position += taken
                self._skip -= taken
                if self._skip:
                    break
            needed = self._needed(position)
            if len(self._pending) - position < needed:
                break
            self._parse(bytes(self._pending[position : position + needed]))
            position += needed
        del self._pending[:position]

    def finished(self) -> bool:
        return self._state == "magic" and not self._skip and not self._pending and self.frames > 0

    def _needed(self, position: int) -> int:
        if self._state in ("magic", "skippable size", "block"):
            return 4 if self._state != "block" else 3
        if self._state == "checksum":
            return 4
        # A frame header: its first byte says how long the rest is.
        if position >= len(self._pending):
            return 1
        descriptor = self._pending[position]
        single_segment = descriptor >> 5 & 1
        content_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
        return 1 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3] + content_size

    def _parse(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        if self._state == "magic":
            if value == _ZSTD_MAGIC:
                self._state = "frame header"
                self.frames += 1
            elif _SKIPPABLE_MIN <= value <= _SKIPPABLE_MAX:
                self._state = "skippable size"
            else:
                raise _Corrupt(f"not a zstd frame at a frame boundary (magic {value:#010x})")
        elif self._state == "skippable size":
            self._skip, self._state = value, "magic"
        elif self._state == "frame header":
            if header[0] & 0x08:
                raise _Corrupt("a zstd frame header with its reserved bit set")
            self._checksum = bool(header[0] & 0x04)
            self._state = "block"
        elif self._state == "block":
            self._block(value)
        else:  # the frame's checksum
            self._state = "magic"

    def _block(self, header: int) -> None:
        last, kind, size = header & 1, header >> 1 & 3, header >> 3
        if kind == 3 or size > ZSTD_BLOCK_MAX:
            raise _Corrupt(f"a zstd block of type {kind} and size {size} is not valid")
        if kind == 0:  # raw: the bytes as they are
            self._count(size)
            self._skip = size
        elif kind == 1:  # RLE: one byte, repeated size times
            self._count(size)
            self._skip = 1
        else:  # compressed: at most a block's maximum
            self._count(ZSTD_BLOCK_MAX)
            self._skip = size
        if last:
            if self._checksum:
                self._state = "checksum"
            else:
                self._state = "magic"


class LayerMeter:
    """Fed a layer blob's bytes in order (``feed``), counts what its tar stream is
    (``unpacked``) and raises ``_Exceeded`` past ``limit``; ``finish`` checks the stream
    ended where it should. Blocking work (up to a step of decompression per call past the
    first): feed it from a worker thread.

    With ``out``, the tar stream is also handed to it as it comes, at most a step at a time
    (``layerread`` parses it so); a zstd layer gives it nothing."""

    def __init__(self, limit: int, out: Callable[[bytes], None] | None = None) -> None:
        self.limit = limit
        self._out = out
        self.stored = 0
        self.unpacked = 0
        self.kind: str | None = None
        self._head = b""
        self._gzip: zlib._Decompress | None = None
        self._zstd: _Zstd | None = None

    def feed(self, chunk: bytes) -> None:
        self.stored += len(chunk)
        if self.kind is None:
            self._head += chunk
            if len(self._head) < _MAGIC_BYTES:
                return
            chunk, self._head = self._head, b""
            self.kind = _kind(chunk)
            if self.kind == "zstd":
                self._zstd = _Zstd(self._count)
        if self.kind == "gzip":
            self._inflate(chunk)
        elif self._zstd is not None:
            self._zstd.feed(chunk)
        else:
            self._emit(chunk)

    def finish(self) -> int:
        """The count, once every byte was fed; ``_Corrupt`` when the stream ends early."""
        if self.kind is None:  # shorter than a magic number: a tar that short is its size
            self.kind = _kind(self._head)
            if self.kind == "plain":
                self._emit(self._head)
            else:
                raise _Corrupt("it ends inside its first bytes")
        if self.kind == "gzip":
            stream = self._gzip
            while stream is not None and not stream.eof:
                step = stream.decompress(b"", STEP_BYTES)
                if not step:
                    raise _Corrupt("its gzip stream ends early (truncated)")
                self._emit(step)
        if self._zstd is not None and not self._zstd.finished():
            raise _Corrupt("its zstd stream ends early (truncated)")
        return self.unpacked

    def _inflate(self, data: bytes) -> None:
        try:
            while data:
                if self._gzip is None:
                    if not data.startswith(_GZIP_MAGIC) and len(data) >= len(_GZIP_MAGIC):
                        raise _Corrupt("data that is not gzip follows its gzip stream")
                    self._gzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                stream = self._gzip
                decompress_steps(stream, data, self._emit)
                data = b""
                if stream.eof:  # another member may follow, as Go's reader reads them
                    data, self._gzip = stream.unused_data, None
        except zlib.error as error:
            raise _Corrupt(
                f"its gzip stream is corrupt after {self.unpacked} bytes: {error}"
            ) from None

    def _emit(self, data: bytes) -> None:
        self._count(len(data))
        if self._out is not None and data:
            self._out(data)

    def _count(self, size: int) -> None:
        self.unpacked += size
        if self.unpacked > self.limit:
            raise _Exceeded


def _kind(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if int.from_bytes(head[:_MAGIC_BYTES], "little") == _ZSTD_MAGIC:
        return "zstd"
    return "plain"


# --- how much room unpacking has ------------------------------------------------------


def no_reserve(size: int) -> int:
    """Leave nothing free (a client outside kukeond; kukeond passes the DiskPressure one)."""
    return 0


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    """What bounds the unpacking of an image on this node."""

    max_bytes: int = 0
    """kukeond's ``imageUnpackedMaxBytes``: the most the layers one unpack applies may
    inflate to (0: only the free-space bound)."""
    reserve: Callable[[int], int] = field(default=no_reserve)
    """Given the size of the snapshotter's filesystem, the bytes an unpack must leave free
    (kukeond: the DiskPressure threshold, so an image never puts the node under it)."""
    inode_reserve: Callable[[int], int] = field(default=no_reserve)
    """Given the inodes of the snapshotter's filesystem, those an unpack must leave free
    (kukeond: the DiskPressure threshold on inodes)."""


@dataclass(frozen=True, slots=True)
class Room:
    bytes: int
    why: str
    """How it was worked out, for the refusal's message."""
    entries: int = UNBOUNDED
    """The inodes the layers may create (unbounded on a filesystem without an inode limit,
    btrfs and some overlays, which report 0 inodes)."""
    entries_why: str = "no bound: the filesystem has no inode limit"


_unpacking: dict[int, int] = {}
"""Bytes being unpacked right now, by filesystem (``st_dev``): two unpacks at once must not
each count on the same free space."""
_unpacking_entries: dict[int, int] = {}
"""Inodes those unpacks create, likewise."""


def unpack_room(limits: UnpackLimits, root: str | None) -> Room:
    """The room the layers of one unpack may take: the free space of ``root``'s filesystem
    (the snapshotter's directory; None when containerd does not say it) less the reserve
    and what other unpacks are taking, and at most ``limits.max_bytes``; likewise its free
    inodes. Blocking (statvfs)."""
    rooms: list[Room] = []
    entries = Room(UNBOUNDED, "")
    if root is not None:
        try:
            found = os.statvfs(root)
            device = os.stat(root).st_dev
        except OSError:
            found = None
        if found is not None:
            size, free = found.f_blocks * found.f_frsize, found.f_bavail * found.f_frsize
            reserve = limits.reserve(size)
            busy = _unpacking.get(device, 0)
            others = f", {busy} bytes being unpacked by other images" if busy else ""
            rooms.append(
                Room(
                    max(0, free - reserve - busy),
                    f"{free} bytes free in {root} less {reserve} bytes kept free so that the "
                    f"node does not come under DiskPressure{others}",
                )
            )
            if found.f_files > 0:
                entries = _inode_room(limits, root, found, _unpacking_entries.get(device, 0))
    if limits.max_bytes:
        rooms.append(Room(limits.max_bytes, "kukeond's imageUnpackedMaxBytes"))
    if not rooms:
        return Room(UNBOUNDED, "no bound: the snapshotter's directory is unknown")
    room = min(rooms, key=lambda room: room.bytes)
    if entries.why:
        room = Room(room.bytes, room.why, entries.bytes, entries.why)
    return room


def _inode_room(limits: UnpackLimits, root: str, found: os.statvfs_result, busy: int) -> Room:
    """The inodes left to unpacking (as a ``Room`` whose ``bytes`` are inodes)."""
    reserve = limits.inode_reserve(found.f_files)
    others = f", {busy} being created by other unpacks" if busy else ""
    return Room(
        max(0, found.f_favail - reserve - busy),
        f"{found.f_favail} inodes free in {root} less {reserve} kept free so that the node "
        f"does not come under DiskPressure{others}",
    )


def _first_past(amounts: Sequence[int], bound: int) -> tuple[int, int]:
    """The index of the first of ``amounts`` whose sum up to it passes ``bound``, and the
    sum before it."""
    before = 0
    for index, amount in enumerate(amounts):
        if before + amount > bound:
            return index, before
        before += amount
    raise ValueError("the layers fit the room")


def too_large(
    image: str, sizes: Sequence[tuple[Descriptor, int]], room: Room
) -> LayerTooLargeError:
    """The refusal of layers ``sizes`` (each with what it takes unpacked, bottom first) that
    do not fit ``room``: it names the first layer past it."""
    index, before = _first_past([size for _layer, size in sizes], room.bytes)
    layer, size = sizes[index]
    return LayerTooLargeError(
        image=image,
        layer=layer.digest,
        size=layer.size,
        inflated=size,
        room=room.bytes,
        why=room.why,
        counted_before=before,
    )


def too_many(
    image: str, layers: Sequence[Descriptor], entries: Sequence[int], room: Room
) -> LayerTooManyEntriesError:
    """The refusal of ``layers`` (bottom first) whose ``entries`` do not fit ``room``'s
    inodes: it names the first layer past them."""
    index, before = _first_past(entries, room.entries)
    return LayerTooManyEntriesError(
        image=image,
        layer=layers[index].digest,
        entries=entries[index],
        room=room.entries,
        why=room.entries_why,
        counted_before=before,
    )


_claims = threading.Lock()


def _claim(
    limits: UnpackLimits, root: str | None, size: int, entries: int
) -> tuple[Room | None, int | None]:
    """Under the lock, so that two unpacks cannot both count on the same free space (or
    inodes): the room, when ``size`` or ``entries`` does not fit it; else None, and both
    counted as taken on the filesystem (its device, returned) until released."""
    with _claims:
        room = unpack_room(limits, root)
        if size > room.bytes or entries > room.entries:
            return room, None
        device: int | None = None
        if root is not None:
            with contextlib.suppress(OSError):
                device = os.stat(root).st_dev
        if device is not None:
            _unpacking[device] = _unpacking.get(device, 0) + size
            _unpacking_entries[device] = _unpacking_entries.get(device, 0) + entries
        return None, device


def _release(device: int, size: int, entries: int) -> None:
    with _claims:
        for taken, amount in ((_unpacking, size), (_unpacking_entries, entries)):
            taken[device] -= amount
            if not taken[device]:
                del taken[device]


@contextlib.asynccontextmanager
async def claiming(
    limits: UnpackLimits,
    root: str | None,
    *,
    image: str,
    sizes: Sequence[tuple[Descriptor, int]],
    entries: Sequence[int] = (),
) -> AsyncIterator[None]:
    """Take the room the layers ``sizes`` (and their ``entries``, inodes) need on ``root``'s
    filesystem while the block unpacks them, or refuse them (`LayerTooLargeError`,
    `LayerTooManyEntriesError`) when the room left now, what other unpacks took included,
    is too small."""
    total = sum(size for _layer, size in sizes)
    inodes = sum(entries)
    refused, device = await asyncio.to_thread(_claim, limits, root, total, inodes)
    if refused is not None:
        if total > refused.bytes:
            raise too_large(image, sizes, refused)
        raise too_many(image, [layer for layer, _size in sizes], entries, refused)
    try:
        yield
    finally:
        if device is not None:
            _release(device, total, inodes)
