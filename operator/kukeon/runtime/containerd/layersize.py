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
- zstd: decompressed the same way, frame after frame (skippable frames skipped), with
  ``compression.zstd`` (Python 3.14; its backport, ``backports.zstd``, before). A frame
  whose window is larger than libzstd's default limit (128 MiB, what ``zstd -d`` takes
  without ``--memory``) is refused as unreadable: its window is what decompressing it
  holds in memory while the layer is read (a ``zstd --long=27`` frame: +129 MiB of peak
  RSS; ``zstd -19``'s 8 MiB window: +10 MiB; gzip's 32 KiB: next to nothing). A meter
  decompresses only frames whose window fits the one it is given (``window``), taken
  from kukeond's budget of windows (``zstdwindow``); before a frame that needs more it
  raises ``zstdwindow.WindowNeeded``;
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
import sys
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from kukeon.runtime.containerd.archivesize import STEP_BYTES, decompress_steps
from kukeon.runtime.containerd.errors import ContainerdError
from kukeon.runtime.containerd.oci import Descriptor
from kukeon.runtime.containerd.zstdwindow import ZSTD_WINDOW_MAX, WindowNeeded, frame_window

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the same module, backported: a dependency while kukeon runs on Python < 3.14
    from backports import zstd

LABEL_UNPACKED_SIZE: Final = "kukeon.io/uncompressed-size"
"""On a layer's content blob: the bytes of its tar once decompressed, counted once."""
LABEL_UNPACKED_ENTRIES: Final = "kukeon.io/unpacked-entries"
"""On a layer's content blob: the inodes its tar creates at most (``layerread.EntryCounter``),
counted with ``LABEL_UNPACKED_SIZE``. A zstd layer labelled ``uncounted`` (before zstd was
decompressed here) is counted again, once."""
UNBOUNDED: Final = 1 << 62

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = 0xFD2FB528
_MAGIC_BYTES: Final = 4

_Decompressor: TypeAlias = "zlib._Decompress | zstd.ZstdDecompressor"


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
        before = (
            f" after {counted_before} bytes of the layers unpacked before it"
            if counted_before
            else ""
        )
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
        before = (
            f" after {counted_before} of the layers unpacked before it" if counted_before else ""
        )
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


class LayerMeter:
    """Fed a layer blob's bytes in order (``feed``), counts what its tar stream is
    (``unpacked``) and raises ``_Exceeded`` past ``limit``; ``finish`` checks the stream
    ended where it should. Blocking work (up to a step of decompression per call past the
    first): feed it from a worker thread.

    With ``out``, the tar stream is also handed to it as it comes, at most a step at a time
    (``layerread`` parses it so). A zstd frame is decompressed only when the window its
    header asks for is at most ``window`` bytes (what the read holds of kukeond's budget):
    before one that needs more, ``WindowNeeded``."""

    def __init__(
        self, limit: int, out: Callable[[bytes], None] | None = None, *, window: int
    ) -> None:
        self.limit = limit
        self.window = window
        self._out = out
        self.stored = 0
        self.unpacked = 0
        self.kind: str | None = None
        self._head = b""
        self._frame_head = b""
        """The start of a zstd frame whose header is not whole yet."""
        self._stream: _Decompressor | None = None
        """The gzip member or zstd frame being decompressed (None between them)."""

    def feed(self, chunk: bytes) -> None:
        self.stored += len(chunk)
        if self.kind is None:
            self._head += chunk
            if len(self._head) < _MAGIC_BYTES:
                return
            chunk, self._head = self._head, b""
            self.kind = _kind(chunk)
        if self.kind == "plain":
            self._emit(chunk)
        else:
            self._inflate(chunk)

    def finish(self) -> int:
        """The count, once every byte was fed; ``_Corrupt`` when the stream ends early."""
        if self.kind is None:  # shorter than a magic number: a tar that short is its size
            self.kind = _kind(self._head)
            if self.kind == "plain":
                self._emit(self._head)
            else:
                raise _Corrupt("it ends inside its first bytes")
        if self._frame_head:
            raise _Corrupt("its zstd stream ends inside a frame header (truncated)")
        stream = self._stream
        try:
            while stream is not None and not stream.eof:
                step = stream.decompress(b"", STEP_BYTES)
                if not step:
                    raise _Corrupt(f"its {self.kind} stream ends early (truncated)")
                self._emit(step)
        except (zlib.error, zstd.ZstdError) as error:
            raise self._corrupt(error) from None
        return self.unpacked

    def close(self) -> None:
        """Drop the decompressor (a zstd frame's window with it): the read is over."""
        self._stream = None

    def _inflate(self, data: bytes) -> None:
        try:
            while data:
                if self._stream is None:
                    data = self._whole_header(data)
                    if not data:
                        return
                    self._stream = self._next_stream(data)
                stream = self._stream
                decompress_steps(stream, data, self._emit)
                data = b""
                if stream.eof:  # another member or frame may follow, as Go's readers read
                    data, self._stream = stream.unused_data, None
        except (zlib.error, zstd.ZstdError) as error:
            raise self._corrupt(error) from None

    def _whole_header(self, data: bytes) -> bytes:
        """``data`` from the start of the next zstd frame once its header is whole (b""
        until then, the start kept), checked against the window given; gzip's as is."""
        if self.kind != "zstd":
            return data
        data, self._frame_head = self._frame_head + data, b""
        window = frame_window(data)
        if window is None:
            self._frame_head = data
            return b""
        if window > ZSTD_WINDOW_MAX:
            raise _Corrupt(
                f"a zstd frame after {self.unpacked} bytes needs a window of {window} bytes, "
                f"more than libzstd decompresses by default ({ZSTD_WINDOW_MAX} bytes, as "
                "zstd -d without --memory)"
            )
        if window > self.window:
            raise WindowNeeded(window)
        return data

    def _next_stream(self, data: bytes) -> _Decompressor:
        if self.kind == "gzip":
            if not data.startswith(_GZIP_MAGIC) and len(data) >= len(_GZIP_MAGIC):
                raise _Corrupt("data that is not gzip follows its gzip stream")
            return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        # A zstd frame or a skippable one; the decompressor refuses anything else.
        return zstd.ZstdDecompressor()

    def _corrupt(self, error: Exception) -> _Corrupt:
        return _Corrupt(f"its {self.kind} stream is corrupt after {self.unpacked} bytes: {error}")

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
    image: str,
    sizes: Sequence[tuple[Descriptor, int]],
    room: Room,
    layer_images: Sequence[str] = (),
) -> LayerTooLargeError:
    """The refusal of layers ``sizes`` (each with what it takes unpacked, bottom first) that
    do not fit ``room``: it names the first layer past it, and its image (``image``, or
    ``layer_images``' for that layer when the layers are of several images)."""
    index, before = _first_past([size for _layer, size in sizes], room.bytes)
    layer, size = sizes[index]
    return LayerTooLargeError(
        image=layer_images[index] if layer_images else image,
        layer=layer.digest,
        size=layer.size,
        inflated=size,
        room=room.bytes,
        why=room.why,
        counted_before=before,
    )


def too_many(
    image: str,
    layers: Sequence[Descriptor],
    entries: Sequence[int],
    room: Room,
    layer_images: Sequence[str] = (),
) -> LayerTooManyEntriesError:
    """The refusal of ``layers`` (bottom first) whose ``entries`` do not fit ``room``'s
    inodes: it names the first layer past them (and its image, as ``too_large``)."""
    index, before = _first_past(entries, room.entries)
    return LayerTooManyEntriesError(
        image=layer_images[index] if layer_images else image,
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
            # A claim of nothing (an image whose layers are all there) has no count left to
            # take from once the others' claims ended: the count is gone, not an error.
            left = taken.get(device, 0) - amount
            if left > 0:
                taken[device] = left
            else:
                taken.pop(device, None)


@contextlib.asynccontextmanager
async def claiming(
    limits: UnpackLimits,
    root: str | None,
    *,
    image: str,
    sizes: Sequence[tuple[Descriptor, int]],
    entries: Sequence[int] = (),
    layer_images: Sequence[str] = (),
) -> AsyncIterator[None]:
    """Take the room the layers ``sizes`` (and their ``entries``, inodes) need on ``root``'s
    filesystem while the block unpacks them, or refuse them (`LayerTooLargeError`,
    `LayerTooManyEntriesError`) when the room left now, what other unpacks took included,
    is too small. The layers are ``image``'s, or those of several images (``layer_images``,
    the image of each: an archive's import claims for all its images at once)."""
    total = sum(size for _layer, size in sizes)
    inodes = sum(entries)
    refused, device = await asyncio.to_thread(_claim, limits, root, total, inodes)
    if refused is not None:
        if total > refused.bytes:
            raise too_large(image, sizes, refused, layer_images)
        layers = [layer for layer, _size in sizes]
        raise too_many(image, layers, entries, refused, layer_images)
    try:
        yield
    finally:
        if device is not None:
            _release(device, total, inodes)
