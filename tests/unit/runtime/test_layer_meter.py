"""LayerMeter: what a layer's tar is once decompressed, counted before containerd unpacks
it; a gzip bomb is refused after a bounded amount of work, a corrupt or cut stream is an
error, a zstd layer is decompressed and counted the same way."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import grpc
import pytest
from backports import zstd

from kukeon.runtime.containerd._gen.services.introspection.v1 import introspection_pb2
from kukeon.runtime.containerd.client import ContainerdClient, Stubs
from kukeon.runtime.containerd.layersize import (
    LayerMeter,
    LayerTooLargeError,
    UnpackLimits,
    _Corrupt,
    _Exceeded,
    claiming,
    unpack_room,
)
from kukeon.runtime.containerd.oci import Descriptor
from kukeon.runtime.containerd.zstdwindow import ZSTD_WINDOW_MAX

MiB = 1024 * 1024


def counted(data: bytes, limit: int, chunk: int = 64 * 1024) -> LayerMeter:
    meter = LayerMeter(limit, window=ZSTD_WINDOW_MAX)
    for start in range(0, len(data), chunk):
        meter.feed(data[start : start + chunk])
    meter.finish()
    return meter


def test_a_gzip_layer_counts_what_it_decompresses_to() -> None:
    data = gzip.compress(b"z" * (3 * MiB + 5))
    meter = counted(data, limit=4 * MiB)
    assert meter.kind == "gzip"
    assert meter.unpacked == 3 * MiB + 5
    assert meter.stored == len(data)


def test_concatenated_gzip_members_are_counted_one_after_another() -> None:
    data = gzip.compress(b"a" * MiB) + gzip.compress(b"b" * (2 * MiB))
    assert counted(data, limit=4 * MiB).unpacked == 3 * MiB


def test_a_gzip_bomb_stops_at_the_bound_without_inflating_whole() -> None:
    bomb = gzip.compress(bytes(256 * MiB), compresslevel=9)  # ~250 KiB
    assert len(bomb) < MiB
    meter = LayerMeter(16 * MiB, window=ZSTD_WINDOW_MAX)
    started = time.monotonic()
    with pytest.raises(_Exceeded):
        meter.feed(bomb)  # one chunk that inflates to 256 MiB
    assert time.monotonic() - started < 2.0
    # Stopped within a step past the bound: the rest was never decompressed.
    assert 16 * MiB < meter.unpacked <= 17 * MiB


def test_a_plain_tar_layer_is_its_own_size() -> None:
    data = b"ustar" + bytes(10_000)
    meter = counted(data, limit=20_000)
    assert (meter.kind, meter.unpacked) == ("plain", len(data))
    with pytest.raises(_Exceeded):
        counted(data, limit=9_000)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (gzip.compress(b"x" * MiB)[:-100], "truncated"),
        (gzip.compress(b"x" * MiB)[:20] + b"\xff" * 200, "corrupt"),
        (gzip.compress(b"x" * 100) + b"\0" * 512, "not gzip follows"),
    ],
    ids=["truncated", "corrupt", "trailing zeros"],
)
def test_a_broken_gzip_layer_is_a_clear_error(data: bytes, why: str) -> None:
    with pytest.raises(_Corrupt, match=why):
        counted(data, limit=4 * MiB)


def test_a_zstd_layer_counts_what_it_decompresses_to_frame_after_frame() -> None:
    data = bytes(range(256)) * (4 * MiB // 256) + b"tail"
    meter = counted(zstd.compress(data), limit=8 * MiB)
    assert (meter.kind, meter.unpacked) == ("zstd", len(data))
    # Two frames one after another (one without its content size), a skippable one between.
    skippable = (0x184D2A50).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    second = zstd.ZstdCompressor()
    streamed = second.compress(b"b" * MiB) + second.flush()
    three = zstd.compress(b"a" * MiB) + skippable + streamed
    tar: list[bytes] = []
    meter = LayerMeter(8 * MiB, out=tar.append, window=ZSTD_WINDOW_MAX)
    for start in range(0, len(three), 7):
        meter.feed(three[start : start + 7])
    assert meter.finish() == 2 * MiB
    assert b"".join(tar) == b"a" * MiB + b"b" * MiB
    assert max(len(step) for step in tar) <= MiB


def test_a_zstd_bomb_is_stopped_at_the_bound_and_a_cut_one_is_an_error() -> None:
    bomb = zstd.compress(bytes(256 * MiB), level=19)
    assert len(bomb) < 64 * 1024
    meter = LayerMeter(16 * MiB, window=ZSTD_WINDOW_MAX)
    with pytest.raises(_Exceeded):
        meter.feed(bomb)  # in one chunk: stopped within a step of the bound
    assert 16 * MiB < meter.unpacked <= 17 * MiB
    with pytest.raises(_Corrupt, match="truncated"):
        counted(zstd.compress(b"x" * MiB)[:-10], limit=16 * MiB)
    with pytest.raises(_Corrupt, match="its zstd stream is corrupt after 100 bytes"):
        counted(zstd.compress(b"x" * 100) + b"junkjunk", limit=16 * MiB)


def test_the_room_is_the_free_space_less_the_reserve_and_at_most_the_setting(
    tmp_path: Path,
) -> None:
    root = str(tmp_path)
    free_room = unpack_room(UnpackLimits(reserve=lambda size: 0), root)
    assert "bytes free in" in free_room.why
    reserved = unpack_room(UnpackLimits(reserve=lambda size: 1000), root)
    assert free_room.bytes - reserved.bytes in range(0, 1000 + 16 * MiB)  # the disk moves
    capped = unpack_room(UnpackLimits(max_bytes=5), root)
    assert (capped.bytes, capped.why) == (5, "kukeond's imageUnpackedMaxBytes")
    unknown = unpack_room(UnpackLimits(max_bytes=0), None)
    assert unknown.bytes > 1 << 60


async def test_what_other_unpacks_are_taking_is_not_counted_twice(tmp_path: Path) -> None:
    root = str(tmp_path)
    limits = UnpackLimits()
    alone = unpack_room(limits, root)
    layer = Descriptor(media_type="x", digest="sha256:" + "a" * 64, size=1)
    async with claiming(limits, root, image="i", sizes=[(layer, 10 * MiB)]):
        shared = unpack_room(limits, root)
        assert "10485760 bytes being unpacked by other images" in shared.why
        assert alone.bytes - shared.bytes in range(10 * MiB - MiB, 10 * MiB + 16 * MiB)
        too_much = claiming(limits, root, image="i", sizes=[(layer, shared.bytes + 20 * MiB)])
        with pytest.raises(LayerTooLargeError, match="being unpacked by other images"):
            await too_much.__aenter__()
    assert "being unpacked" not in unpack_room(limits, root).why


@pytest.mark.parametrize("other_bytes", [10 * MiB, 0])
async def test_an_unpack_of_nothing_new_ends_beside_another(
    tmp_path: Path, other_bytes: int
) -> None:
    """An image whose layers are all present claims 0 bytes. When another unpack's claim
    ended first, the count was gone and its release raised KeyError: the import failed
    (a tenant's pull of a shared base making another realm's import fail)."""
    root = str(tmp_path)
    limits = UnpackLimits()
    layer = Descriptor(media_type="x", digest="sha256:" + "a" * 64, size=1)
    other = claiming(limits, root, image="a", sizes=[(layer, other_bytes)], entries=[0])
    nothing_new = claiming(limits, root, image="b", sizes=[])
    await other.__aenter__()
    await nothing_new.__aenter__()
    await other.__aexit__(None, None, None)
    await nothing_new.__aexit__(None, None, None)
    assert "being unpacked" not in unpack_room(limits, root).why


class _Introspection:
    def __init__(self, answer: introspection_pb2.PluginsResponse | grpc.StatusCode) -> None:
        self.answer = answer
        self.asked: list[list[str]] = []

    async def Plugins(  # noqa: N802 - the gRPC method's name
        self, request: introspection_pb2.PluginsRequest, **_: object
    ) -> introspection_pb2.PluginsResponse:
        self.asked.append(list(request.filters))
        if isinstance(self.answer, grpc.StatusCode):
            raise grpc.aio.AioRpcError(
                self.answer, grpc.aio.Metadata(), grpc.aio.Metadata(), "no", None
            )
        return self.answer


def _client(introspection: _Introspection) -> ContainerdClient:
    client = ContainerdClient("/nonexistent.sock")
    client._stubs = cast(Stubs, SimpleNamespace(introspection=introspection))
    return client


async def test_the_snapshotter_root_is_asked_once_and_unknown_when_containerd_does_not_say() -> (
    None
):
    plugin = introspection_pb2.Plugin(
        type="io.containerd.snapshotter.v1", id="overlayfs", exports={"root": "/var/lib/x"}
    )
    found = _Introspection(introspection_pb2.PluginsResponse(plugins=[plugin]))
    client = _client(found)
    assert await client.snapshotter_root("overlayfs") == "/var/lib/x"
    assert await client.snapshotter_root("overlayfs") == "/var/lib/x"
    assert found.asked == [["type==io.containerd.snapshotter.v1,id==overlayfs"]]

    refused = _client(_Introspection(grpc.StatusCode.UNIMPLEMENTED))
    assert await refused.snapshotter_root("overlayfs") is None
    silent = _client(_Introspection(introspection_pb2.PluginsResponse()))
    assert await silent.snapshotter_root("overlayfs") is None
