"""A layer's entries (the inodes it creates) are counted in the same pass as its bytes,
before containerd unpacks it: a layer of 200,000 empty files, a few MiB as stored and tiny
in bytes, is refused past the inodes unpacking has; a normal layer passes; the count is
kept on the layer's blob, and a layer counted before inodes were is counted again once."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from backports import zstd

from kukeon.daemon.nodefacts import disk_pressure_inode_reserve
from kukeon.runtime.containerd.layerread import (
    NOTHING_COUNTED,
    EntryCounter,
    LayerCount,
    Member,
    count_labels,
    count_layer,
    known_count,
)
from kukeon.runtime.containerd.layersize import (
    LABEL_UNPACKED_ENTRIES,
    LABEL_UNPACKED_SIZE,
    LayerTooLargeError,
    LayerTooManyEntriesError,
    LayerUnreadableError,
    Room,
    UnpackLimits,
    claiming,
    unpack_room,
)
from kukeon.runtime.containerd.oci import Descriptor

MiB = 1024 * 1024
LAYER = Descriptor(media_type="x", digest="sha256:" + "e" * 64, size=1)


class _Feedable(Protocol):
    def feed(self, chunk: bytes) -> None: ...


_Sink = TypeVar("_Sink", bound=_Feedable)


class Blob:
    """A content store holding one blob, read as containerd streams it (1 MiB chunks)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    async def read_through(self, digest: str, start: Callable[[], _Sink]) -> _Sink:
        self.reads += 1
        sink = start()
        for at in range(0, len(self.data), MiB):
            await asyncio.to_thread(sink.feed, self.data[at : at + MiB])
        return sink


def layer_of(members: list[tuple[str, bytes | None]]) -> bytes:
    """A gzip tar of ``members``: a file with its content, or a directory (None)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue(), compresslevel=6)


def empty_files(count: int) -> bytes:
    """``count`` empty files, 1,000 a directory: as a bomb of inodes would be. Headers are
    a template with the name and checksum changed (tarfile's own takes seconds for these)."""
    template = bytearray(tarfile.TarInfo("x").tobuf(tarfile.USTAR_FORMAT))
    template[148:156] = b" " * 8
    base = sum(template) - template[0]
    headers = []
    for number in range(count):
        name = f"d{number // 1000}/f{number}".encode()
        header = bytearray(template)
        header[: len(name)] = name
        header[148:156] = b"%06o\0 " % (base + sum(name))
        headers.append(bytes(header))
    # Level 6: 1.4 MiB, in 0.4 s (level 9 took 2.5 s for 1.2 MiB).
    return gzip.compress(b"".join(headers) + bytes(1024), compresslevel=6)


async def counted(data: bytes, room: Room, before: LayerCount = NOTHING_COUNTED) -> LayerCount:
    return await count_layer(Blob(data), image="i", layer=LAYER, room=room, before=before)


def room(entries: int, size: int = 1 << 40) -> Room:
    return Room(size, "bytes", entries, "the test's bound")


@pytest.fixture(scope="module")
def inode_bomb() -> bytes:
    return empty_files(200_000)


async def test_a_layer_of_200000_empty_files_is_refused_past_the_inodes(inode_bomb: bytes) -> None:
    assert len(inode_bomb) < 4 * MiB  # a few MiB as stored
    with pytest.raises(LayerTooManyEntriesError) as refused:
        await counted(inode_bomb, room(100_000))
    error = refused.value
    assert error.entries == 100_001
    assert str(error) == (
        f"image 'i': layer {LAYER.digest} creates more than 100001 files and directories, "
        "more than the 100000 inodes unpacking may take (the test's bound); "
        "nothing of it was unpacked"
    )
    # Under a bound it fits: every file and its directory, while the bytes are only the tar.
    count = await counted(inode_bomb, room(1_000_000))
    assert count.entries == 200_000 + 200
    assert count.bytes < 200 * MiB
    # What the unpack's earlier layers created counts too.
    earlier = "after 999000 of the layers unpacked before it"
    with pytest.raises(LayerTooManyEntriesError, match=earlier):
        await counted(inode_bomb, room(1_000_000), before=LayerCount(0, 999_000))


async def test_a_normal_layer_is_counted_exactly_and_passes() -> None:
    data = layer_of(
        [
            ("etc", None),
            ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            ("./usr/bin/busybox", b"\x7fELF" + bytes(3 * MiB)),  # usr, usr/bin: not listed
            ("usr/bin/sh", b""),
            ("etc/group", b"root:x:0:\n"),  # a directory revisited: counted again (at most)
        ]
    )
    count = await counted(data, room(10))
    assert count.entries == 1 + 1 + 3 + 1 + 2
    assert count.bytes > 3 * MiB
    # The bytes bound still stops it first when that is what it passes.
    with pytest.raises(LayerTooLargeError):
        await counted(data, room(10, size=MiB))


async def test_a_zstd_layer_of_200000_empty_files_is_refused_past_the_inodes(
    inode_bomb: bytes,
) -> None:
    # zstd's default level makes 0.6 MiB of it in 0.06 s (level 19: 0.3 MiB, 15 s).
    bomb = zstd.compress(gzip.decompress(inode_bomb))
    assert len(bomb) < 4 * MiB
    with pytest.raises(LayerTooManyEntriesError) as refused:
        await counted(bomb, room(100_000))
    assert refused.value.entries == 100_001
    assert (await counted(bomb, room(1_000_000))).entries == 200_000 + 200


async def test_a_tar_that_does_not_parse_is_unreadable() -> None:
    with pytest.raises(LayerUnreadableError, match="tar header"):
        await counted(gzip.compress(b"not a tar".ljust(2048, b"x")), room(10))


def test_the_count_is_kept_on_the_blob_and_an_older_count_is_counted_again() -> None:
    labels = count_labels(LayerCount(4096, 7))
    assert labels == {LABEL_UNPACKED_SIZE: "4096", LABEL_UNPACKED_ENTRIES: "7"}
    assert known_count(labels) == LayerCount(4096, 7)
    # A zstd layer's, before zstd was decompressed here: its entries are counted now, once.
    assert known_count({LABEL_UNPACKED_SIZE: "4096", LABEL_UNPACKED_ENTRIES: "uncounted"}) is None
    assert known_count({LABEL_UNPACKED_SIZE: "4096"}) is None  # bytes only: before this count
    assert known_count({}) is None


def test_the_root_entry_creates_nothing_and_a_hard_link_counts_one() -> None:
    counter = EntryCounter(limit=10)
    for name, kind in [(".", "dir"), ("a", "dir"), ("a/x", "file"), ("a/y", "hardlink")]:
        counter.member(Member(name, kind, "", 0))
    assert counter.entries == 3


def test_the_inode_room_is_the_free_inodes_less_the_reserve(tmp_path: Path) -> None:
    found = os.statvfs(tmp_path)
    free = unpack_room(UnpackLimits(inode_reserve=disk_pressure_inode_reserve), str(tmp_path))
    if found.f_files == 0:
        assert "no inode limit" in free.entries_why
        return
    assert "inodes free in" in free.entries_why
    assert "DiskPressure" in free.entries_why
    assert found.f_favail - free.entries in range(
        disk_pressure_inode_reserve(found.f_files) - 1000,
        disk_pressure_inode_reserve(found.f_files) + 1000,  # the filesystem moves
    )
    none = unpack_room(UnpackLimits(inode_reserve=lambda files: files), str(tmp_path))
    assert none.entries == 0


async def test_inodes_other_unpacks_take_are_not_counted_twice(tmp_path: Path) -> None:
    root = str(tmp_path)
    if os.statvfs(root).f_files == 0:
        pytest.skip("a filesystem without an inode limit")
    limits = UnpackLimits()
    alone = unpack_room(limits, root)
    async with claiming(limits, root, image="i", sizes=[(LAYER, 1)], entries=[5000]):
        shared = unpack_room(limits, root)
        assert "5000 being created by other unpacks" in shared.entries_why
        assert alone.entries - shared.entries in range(5000 - 500, 5000 + 500)
        too_many = claiming(
            limits, root, image="i", sizes=[(LAYER, 1)], entries=[shared.entries + 1000]
        )
        with pytest.raises(LayerTooManyEntriesError, match="being created by other unpacks"):
            await too_many.__aenter__()
    assert "being created" not in unpack_room(limits, root).entries_why
