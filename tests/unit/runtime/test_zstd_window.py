"""zstd windows: what a frame needs is read from its header, and the windows of the layers
kukeond reads at once come out of one budget (first come, first served, given back at the
end, on failure and on cancellation); two concurrent reads of 128 MiB-window layers never
hold more than it."""

from __future__ import annotations

import asyncio
import io
import random
import tarfile
import threading
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

import pytest
from backports import zstd

from kukeon.runtime.containerd import layersize, zstdwindow
from kukeon.runtime.containerd.content import ContentInfo
from kukeon.runtime.containerd.layerread import (
    LayerReadError,
    Member,
    StopReading,
    count_layer,
    read_layer,
)
from kukeon.runtime.containerd.layersize import (
    LayerMeter,
    LayerUnreadableError,
    Room,
    _Corrupt,
)
from kukeon.runtime.containerd.oci import Descriptor
from kukeon.runtime.containerd.zstdwindow import (
    ZSTD_WINDOW_MAX,
    ReadOverError,
    WindowBudget,
    WindowHold,
    WindowNeeded,
    WindowTooLargeError,
    frame_window,
)

MiB = 1024 * 1024
LONG = 1 << 27
"""``zstd --long=27``'s window."""


def framed(data: bytes, window_log: int) -> bytes:
    """A frame with a window descriptor (no content size, as ``zstd`` from a pipe)."""
    compressor = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: window_log})
    return compressor.compress(data) + compressor.flush()


def rle_frame(content: int) -> bytes:
    """A single-segment frame of ``content`` zero bytes in RLE blocks: its window is its
    content size (RFC 8878 3.1.1.1.2)."""
    out = bytearray(b"\x28\xb5\x2f\xfd\xa0") + content.to_bytes(4, "little")
    left = content
    while left:
        size = min(left, 128 * 1024)
        left -= size
        out += ((1 if not left else 0) | 1 << 1 | size << 3).to_bytes(3, "little") + b"\0"
    return bytes(out)


def skippable(payload: bytes) -> bytes:
    return b"\x50\x2a\x4d\x18" + len(payload).to_bytes(4, "little") + payload


# --- the window a frame needs ----------------------------------------------------------


@pytest.mark.parametrize("window_log", [10, 20, 23, 27, 28])
def test_a_window_descriptor_is_read(window_log: int) -> None:
    assert frame_window(framed(b"x" * 1000, window_log)) == 1 << window_log


def test_a_mantissa_adds_eighths() -> None:
    # Exponent 17 (windowLog 27), mantissa 3: 2^27 + 3/8 of it.
    header = b"\x28\xb5\x2f\xfd\x00" + bytes([17 << 3 | 3])
    assert frame_window(header) == LONG + 3 * (LONG >> 3)


@pytest.mark.parametrize("size", [0, 100, 255, 256, 300, 70_000, MiB + 5])
def test_a_single_segment_frame_needs_its_content_size(size: int) -> None:
    frame = zstd.compress(b"a" * size)
    info = zstd.get_frame_info(frame)
    assert info.decompressed_size == size
    assert frame_window(frame) == max(size, 1024)  # libzstd's least window is 1 KiB


def test_a_header_not_whole_yet_and_what_is_no_frame() -> None:
    frame = framed(b"x" * 1000, 27)
    assert [frame_window(frame[:cut]) for cut in range(7)] == [None] * 6 + [LONG]
    with_id = zstd.compress(b"a" * 300)
    assert frame_window(with_id[:5]) is None  # a 2-byte content size follows
    assert frame_window(skippable(b"meta")) == 0
    assert frame_window(b"\x28\xb5\x2f\xfd\xff" + b"\xff" * 20) == 0  # reserved bit: junk


def test_the_windows_past_libzstds_limit_are_refused_as_libzstd_refuses_them() -> None:
    for content, readable in ((ZSTD_WINDOW_MAX, True), (ZSTD_WINDOW_MAX + 1, False)):
        frame = rle_frame(content)
        assert frame_window(frame) == content
        decompressor = zstd.ZstdDecompressor()
        if readable:
            assert len(decompressor.decompress(frame, MiB)) == MiB
        else:
            with pytest.raises(zstd.ZstdError, match="too much memory"):
                decompressor.decompress(frame, MiB)
        meter = LayerMeter(1 << 40, window=ZSTD_WINDOW_MAX)
        if readable:
            meter.feed(frame[: 64 * 1024])
            meter.close()
        else:
            with pytest.raises(_Corrupt, match=f"needs a window of {content} bytes"):
                meter.feed(frame)


def fed(meter: LayerMeter, data: bytes, step: int) -> None:
    for at in range(0, len(data), step):
        meter.feed(data[at : at + step])


def test_a_meter_asks_for_a_window_before_it_decompresses_anything() -> None:
    frames = framed(b"a" * MiB, 20) + skippable(b"x") + framed(b"b" * MiB, 23)
    meter = LayerMeter(8 * MiB, window=0)
    with pytest.raises(WindowNeeded) as needed:
        fed(meter, frames, 3)
    assert (needed.value.window, meter.unpacked) == (1 << 20, 0)
    meter = LayerMeter(8 * MiB, window=1 << 20)
    with pytest.raises(WindowNeeded) as needed:
        fed(meter, frames, 5)  # a later frame's header cut between feeds
    assert (needed.value.window, meter.unpacked) == (1 << 23, MiB)
    meter = LayerMeter(8 * MiB, window=1 << 23)
    meter.feed(frames)
    assert meter.finish() == 2 * MiB
    cut = LayerMeter(8 * MiB, window=1 << 23)
    cut.feed(frames[: len(framed(b"a" * MiB, 20)) + 3])
    with pytest.raises(_Corrupt, match="inside a frame header"):
        cut.finish()


# --- the budget --------------------------------------------------------------------------


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_first_come_first_served_a_large_window_is_not_starved() -> None:
    budget = WindowBudget(100)
    await budget.acquire(60)
    order: list[str] = []

    async def take(name: str, amount: int) -> None:
        await budget.acquire(amount)
        order.append(name)

    large = asyncio.ensure_future(take("large", 60))
    await settle()
    small = [asyncio.ensure_future(take(f"small{n}", 10)) for n in range(3)]
    await settle()
    # 40 bytes are free, but the small ones came after the large one: they wait.
    assert (order, budget.held, budget.waiting) == ([], 60, 4)
    budget.release(60)
    await asyncio.gather(large, *small)
    assert order == ["large", "small0", "small1", "small2"]
    assert budget.held == budget.peak == 90


async def test_a_window_past_the_whole_budget_is_refused_at_once() -> None:
    budget = WindowBudget(LONG)
    with pytest.raises(WindowTooLargeError, match=f"{LONG + 1} bytes.*{LONG} bytes"):
        await budget.acquire(LONG + 1)
    assert budget.held == 0
    await budget.acquire(LONG)
    waiting = asyncio.ensure_future(budget.acquire(LONG))
    await settle()
    budget.resize(LONG // 2)  # shrunk under a waiting request: it is refused too
    with pytest.raises(WindowTooLargeError):
        await waiting


async def test_a_cancelled_wait_takes_nothing_and_lets_those_behind_it_in() -> None:
    budget = WindowBudget(100)
    await budget.acquire(50)
    large = asyncio.ensure_future(budget.acquire(80))
    await settle()
    small = asyncio.ensure_future(budget.acquire(30))
    await settle()
    assert not small.done()
    large.cancel()
    await small  # the large one was before it; gone, the small one fits
    assert (budget.held, budget.waiting) == (80, 0)


async def test_a_wait_granted_as_it_is_cancelled_gives_the_bytes_back() -> None:
    budget = WindowBudget(100)
    await budget.acquire(100)
    waiting = asyncio.ensure_future(budget.acquire(100))
    await settle()
    budget.release(100)  # grants it...
    waiting.cancel()  # ...and it is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert budget.held == 0


class Dropped:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


async def test_a_hold_gives_back_after_the_step_its_thread_is_in() -> None:
    budget = WindowBudget(LONG)
    hold = WindowHold(budget)
    decoding = Dropped()
    hold.decoding(decoding)
    await hold.grow(8 * MiB)
    assert (hold.bytes, budget.held) == (8 * MiB, 8 * MiB)
    inside, leave = threading.Event(), threading.Event()

    def step() -> None:
        with hold.feeding():
            inside.set()
            leave.wait(10)

    thread = asyncio.ensure_future(asyncio.to_thread(step))
    await asyncio.to_thread(inside.wait, 10)
    hold.close()  # the read was cancelled while its thread decompresses
    assert (budget.held, decoding.closed) == (8 * MiB, 0)
    leave.set()
    await thread
    await settle()
    assert (budget.held, decoding.closed) == (0, 1)
    with pytest.raises(ReadOverError), hold.feeding():  # a chunk still queued: not decoded
        raise AssertionError("a step after the read's end ran")


async def test_a_hold_grows_to_the_most_any_frame_needs_holding_nothing_while_it_waits() -> None:
    budget = WindowBudget(2 * LONG)
    hold = WindowHold(budget)
    await hold.grow(1 << 20)
    await budget.acquire(LONG)  # another read
    growing = asyncio.ensure_future(hold.grow(1 << 23))
    await settle()
    assert (budget.held, growing.done()) == (2 * LONG, True)  # gave 1 MiB back, took 128
    assert hold.bytes == LONG
    hold.close()
    await budget.acquire(LONG // 2)
    waiting = WindowHold(budget)
    await waiting.grow(1 << 20)
    growing = asyncio.ensure_future(waiting.grow(1 << 23))
    await settle()
    assert (budget.held, growing.done()) == (LONG + LONG // 2, False)  # holds nothing
    budget.release(LONG)
    await growing
    assert (budget.held, waiting.bytes) == (LONG + LONG // 2, LONG)


# --- layer reads through the budget ---------------------------------------------------


class _Feedable(Protocol):
    def feed(self, chunk: bytes) -> None: ...


_Sink = TypeVar("_Sink", bound=_Feedable)


class PacedBlob:
    """A content store of one blob, fed 64 KiB at a time in worker threads, pausing between
    chunks so that concurrent reads are under way at once."""

    def __init__(self, data: bytes, labels: dict[str, str] | None = None) -> None:
        self.data = data
        self.reads = 0
        self.labels = labels or {}
        self.decompressing = asyncio.Event()
        """Set once a chunk was fed whole: the read holds its window."""

    async def info(self, digest: str) -> ContentInfo:
        return ContentInfo(digest, len(self.data), None, self.labels)

    async def read_through(self, digest: str, start: Callable[[], _Sink]) -> _Sink:
        self.reads += 1
        sink = start()
        for at in range(0, len(self.data), 64 * 1024):
            await asyncio.to_thread(sink.feed, self.data[at : at + 64 * 1024])
            self.decompressing.set()
            await asyncio.sleep(0.001)
        return sink


def long_layer(name: str, size: int = MiB) -> bytes:
    """A tar of one file of ``size`` random bytes (as many compressed: read in as many
    chunks) in a ``zstd --long=27`` frame."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BytesIO(random.Random(name).randbytes(size)))
    return framed(out.getvalue(), 27)


class LiveWindows:
    """Stands in for layersize's zstd module: counts the windows of the decompressors
    alive at once (each from its frame's header, until it is dropped)."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self.ZstdError = zstd.ZstdError

    def ZstdDecompressor(self) -> _Tracked:  # noqa: N802 - as the module's class
        return _Tracked(self)


class _Tracked:
    def __init__(self, live: LiveWindows) -> None:
        self._live = live
        self._real = zstd.ZstdDecompressor()
        self._window = 0

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes:
        if not self._window and data:
            self._window = frame_window(data) or 0
            self._live.live += self._window
            self._live.peak = max(self._live.peak, self._live.live)
            weakref.finalize(self, _gone, self._live, self._window)
        return self._real.decompress(data, max_length)

    @property
    def eof(self) -> bool:
        return self._real.eof

    @property
    def needs_input(self) -> bool:
        return self._real.needs_input

    @property
    def unused_data(self) -> bytes:
        return self._real.unused_data


def _gone(live: LiveWindows, window: int) -> None:
    live.live -= window


class Visitor:
    def __init__(self) -> None:
        self.names: list[str] = []

    def member(self, member: Member) -> int:
        self.names.append(member.name)
        return 0

    def content(self, member: Member, data: bytes) -> None:
        raise AssertionError("asks for none")


async def test_concurrent_reads_of_long_window_layers_hold_no_more_than_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = LiveWindows()
    monkeypatch.setattr(layersize, "zstd", live)
    budget = WindowBudget(LONG + LONG // 2)  # room for one 128 MiB window, not two
    monkeypatch.setattr(zstdwindow, "WINDOWS", budget)
    layer = Descriptor(media_type="x", digest="sha256:" + "a" * 64, size=1)
    room = Room(1 << 40, "test")
    blobs = [PacedBlob(long_layer(f"f{n}")) for n in range(4)]
    counts = [count_layer(blob, image="i", layer=layer, room=room) for blob in blobs[:2]]
    reads = [read_layer(blob, "sha256:" + "b" * 64, Visitor) for blob in blobs[2:]]
    counted, read = await asyncio.gather(asyncio.gather(*counts), asyncio.gather(*reads))
    assert [count.entries for count in counted] == [1, 1]
    assert [visitor.names for visitor in read] == [["f2"], ["f3"]]
    assert (budget.peak, budget.held, live.live) == (LONG, 0, 0)
    assert live.peak == LONG  # one window alive at a time (4 x 128 MiB without the budget)
    assert [blob.reads for blob in blobs] == [2, 2, 2, 2]  # the first stopped at the header


async def test_a_window_past_the_budget_names_the_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zstdwindow, "WINDOWS", WindowBudget(64 * MiB))
    layer = Descriptor(media_type="x", digest="sha256:" + "c" * 64, size=1)
    blob = PacedBlob(long_layer("f"))
    with pytest.raises(LayerUnreadableError, match=f"layer {layer.digest} .*imageZstdWindow"):
        await count_layer(blob, image="i", layer=layer, room=Room(1 << 40, "test"))
    with pytest.raises(LayerReadError, match=r"sha256:d+ cannot be read: .*window of 134217728"):
        await read_layer(blob, "sha256:" + "d" * 64, Visitor)
    assert zstdwindow.WINDOWS.held == 0


async def test_a_read_gives_its_window_back_when_it_fails_stops_or_is_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budget = WindowBudget(LONG)
    monkeypatch.setattr(zstdwindow, "WINDOWS", budget)
    whole = long_layer("f")

    class Stops(Visitor):
        def member(self, member: Member) -> int:
            raise StopReading

    assert (await read_layer(PacedBlob(whole), "sha256:e", Stops)).names == []
    with pytest.raises(LayerReadError, match="truncated"):
        await read_layer(PacedBlob(whole[: len(whole) // 2]), "sha256:e", Visitor)
    assert budget.held == 0
    large = PacedBlob(long_layer("g", 8 * MiB))
    slow = asyncio.ensure_future(read_layer(large, "sha256:e", Visitor))
    await large.decompressing.wait()
    queued = asyncio.ensure_future(read_layer(PacedBlob(whole), "sha256:e", Visitor))
    await asyncio.sleep(0.05)
    assert (budget.held, budget.waiting) == (LONG, 1)
    queued.cancel()
    slow.cancel()
    for task in (queued, slow):
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(100):  # the cancelled read's thread finishes its chunk, then gives back
        if budget.held == 0:
            break
        await asyncio.sleep(0.01)
    assert (budget.held, budget.waiting) == (0, 0)
