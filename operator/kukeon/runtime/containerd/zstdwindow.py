"""The memory zstd windows take in kukeond, bounded node-wide.

Decompressing a zstd frame holds its window in memory, as large as its header says (up to
libzstd's default limit, 128 MiB: a ``zstd --long=27`` layer costs kukeond about 129 MiB of
RSS while it is read). kukeond decompresses image layers to count them before containerd
unpacks them and to read /etc/passwd or /bin/sh out of them (``layerread``), each read in a
worker thread, and a realm editor chooses the images: N imports or pulls of such layers at
once would take N x 128 MiB. Lowering libzstd's limit is no way out (it refuses valid
``--long`` layers that containerd applies), so the windows come out of one budget of the
whole process (``WINDOWS``, kukeond's ``imageZstdWindowBudgetBytes``):

- a read learns the window its first frame needs from the frame header (``frame_window``,
  RFC 8878 3.1.1.1) as its first chunk arrives, before any decompression
  (``WindowNeeded``), takes that many bytes from the budget on the event loop (a wait in a
  worker thread would starve the executor the holders' own reads need) and reads again;
  a later frame that needs a larger window than held does the same, then holding the most
  any frame can take, so a read starts over at most twice;
- the budget hands bytes out first come, first served: a large window waits for room and
  small ones that arrive after it wait behind it, so it is never starved;
- a window larger than the whole budget is refused (``WindowTooLargeError``): the read
  names the layer;
- a read gives its bytes back when it ends, fails or is cancelled; if its worker thread is
  still decompressing a chunk then (a cancelled ``asyncio.to_thread`` goes on), only once
  that chunk is done (``WindowHold.feeding``); a chunk still queued for a thread then is
  not decompressed at all (``ReadOverError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Final, Protocol

log = logging.getLogger(__name__)

ZSTD_WINDOW_MAX: Final = (1 << 27) + 1
"""The largest window libzstd decodes by default (``ZSTD_WINDOWLOG_LIMIT_DEFAULT``, 27,
and one byte more, as it checks): what ``zstd -d`` takes without ``--memory``. A frame that
needs more is refused as unreadable."""
ZSTD_WINDOW_BUDGET_BYTES: Final = 2 << 27
"""The default budget (256 MiB): one read of the largest window always fits, and reads of
small windows go on beside it."""
_GROWN_WINDOW: Final = 1 << 27
"""What a read whose later frame needs a larger window than its first grows to: the
largest window descriptor libzstd decodes by default (only a single-segment frame of one
byte more, ``ZSTD_WINDOW_MAX``, grows again)."""
_ZSTD_MAGIC: Final = 0xFD2FB528
_HEADER_MIN: Final = 5
"""Magic number and frame header descriptor: what tells the header's length."""
_WINDOW_MIN: Final = 1 << 10
"""libzstd's least window (``ZSTD_WINDOWLOG_ABSOLUTEMIN``)."""
_SINGLE_SEGMENT: Final = 0x20
_RESERVED: Final = 0x08
_DICTIONARY_ID_BYTES: Final = (0, 1, 2, 4)
_TWO_BYTE_CONTENT_SIZE_BASE: Final = 256


def frame_window(head: bytes) -> int | None:
    """The window, in bytes, the frame ``head`` starts needs to be decompressed (RFC 8878
    3.1.1.1): its window descriptor's, or its content size for a single-segment frame. 0
    for what is not a zstd frame or has its reserved bit set (a skippable frame, junk the
    decoder refuses: neither takes a window); None while ``head`` is shorter than the
    frame's header."""
    if len(head) < 4:
        return None
    if int.from_bytes(head[:4], "little") != _ZSTD_MAGIC:
        return 0
    if len(head) < _HEADER_MIN:
        return None
    descriptor = head[4]
    if descriptor & _RESERVED:
        return 0
    single = bool(descriptor & _SINGLE_SEGMENT)
    content_bytes = (1 if single else 0, 2, 4, 8)[descriptor >> 6]
    end = _HEADER_MIN + (0 if single else 1) + _DICTIONARY_ID_BYTES[descriptor & 3]
    end += content_bytes
    if len(head) < end:
        return None
    if not single:
        window = head[_HEADER_MIN]
        base = 1 << (10 + (window >> 3))
        return base + (base >> 3) * (window & 7)
    content = int.from_bytes(head[end - content_bytes : end], "little")
    if content_bytes == 2:
        content += _TWO_BYTE_CONTENT_SIZE_BASE
    return max(content, _WINDOW_MIN)


class WindowNeeded(Exception):  # noqa: N818 - a signal: the read asks for a window
    """Raised by a read's meter, before it decompresses a frame, when the frame needs a
    larger window than the read holds: the read takes it and starts over."""

    def __init__(self, window: int) -> None:
        self.window = window
        super().__init__(f"a zstd frame needs a window of {window} bytes")


class WindowTooLargeError(Exception):
    """A window larger than the whole budget: the read is refused."""

    def __init__(self, window: int, budget: int) -> None:
        self.window = window
        self.budget = budget
        super().__init__(
            f"its zstd frames need a window of {window} bytes to be decompressed, more than "
            f"the {budget} bytes kukeond's zstd windows may take together "
            "(imageZstdWindowBudgetBytes)"
        )


class ReadOverError(Exception):
    """A step of decompression that starts after its read ended (a cancelled read's chunk
    still queued for a worker thread): it does not run, since its window was given back."""


class _Waiter:
    __slots__ = ("amount", "future")

    def __init__(self, amount: int, future: asyncio.Future[None]) -> None:
        self.amount = amount
        self.future = future


class WindowBudget:
    """Bytes of zstd windows handed out first come, first served (FIFO: a request waits
    while any request before it waits, so a large one is not starved by small ones). Used
    on the event loop only."""

    def __init__(self, total: int = ZSTD_WINDOW_BUDGET_BYTES) -> None:
        self.total = total
        self.held = 0
        self.peak = 0
        """The most ever held at once."""
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def resize(self, total: int) -> None:
        """A new budget (kukeond's configuration, at its start)."""
        self.total = total
        self._wake()

    async def acquire(self, amount: int) -> None:
        """Take ``amount`` bytes, once they are free and every request before is served;
        ``WindowTooLargeError`` when it is more than the whole budget."""
        if amount > self.total:
            raise WindowTooLargeError(amount, self.total)
        if not self._waiters and self.held + amount <= self.total:
            self._take(amount)
            return
        waiter = _Waiter(amount, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        log.debug("a zstd window of %d bytes waits (%d held)", amount, self.held)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(amount)  # granted as it was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                self._wake()  # those behind it may fit now
            raise

    def release(self, amount: int) -> None:
        self.held -= amount
        self._wake()

    def _take(self, amount: int) -> None:
        self.held += amount
        self.peak = max(self.peak, self.held)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.future.done():  # cancelled: its task removes it
                self._waiters.popleft()
                continue
            if waiter.amount > self.total:  # the budget shrank under it
                self._waiters.popleft()
                waiter.future.set_exception(WindowTooLargeError(waiter.amount, self.total))
                continue
            if self.held + waiter.amount > self.total:
                return
            self._waiters.popleft()
            self._take(waiter.amount)
            waiter.future.set_result(None)


WINDOWS: Final = WindowBudget()
"""The budget of kukeond's process: every layer read takes its window from it."""


class Decoding(Protocol):
    """What decompresses with a read's window (``layersize.LayerMeter``)."""

    def close(self) -> None:
        """Drop the decompressor, and with it its window."""


class WindowHold:
    """The window one layer read holds from a budget (``bytes``, 0 until its first frame
    asked for one). The worker thread brackets each step of decompression with
    ``feeding``; the read's end (``close``, on the event loop) drops the decompressor and
    gives the bytes back, or, while a step is still running in its thread, lets that step
    do both once it is done."""

    def __init__(self, budget: WindowBudget) -> None:
        self.budget = budget
        self.bytes = 0
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False
        self._decoding: Decoding | None = None

    def decoding(self, decoding: Decoding) -> None:
        """``decoding`` uses the window from now on (the read started over: the one
        before it is dropped)."""
        previous, self._decoding = self._decoding, decoding
        if previous is not None:
            previous.close()

    async def grow(self, window: int) -> None:
        """Hold at least ``window`` bytes: the first frame's window the first time, then
        the most a frame may need (at most the budget), so a read starts over at most
        twice.
        What was held is given back first: a read waits holding nothing, so two reads
        growing at once never wait on each other."""
        if self.bytes:
            window = max(window, min(_GROWN_WINDOW, self.budget.total))
        self._give_back()
        await self.budget.acquire(window)
        self.bytes = window

    @contextlib.contextmanager
    def feeding(self) -> Iterator[None]:
        """Around a step of decompression, in the worker thread; ``ReadOverError`` once the
        read has ended."""
        with self._lock:
            if self._closed:
                raise ReadOverError("the layer read has ended")
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                last = self._closed and not self._busy
            if last:
                self._drop()
                # A loop closed meanwhile (kukeond stopped) has no budget left to give to.
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._give_back)

    def close(self) -> None:
        """The read ended (done, failed or cancelled): on the event loop."""
        with self._lock:
            self._closed = True
            busy = self._busy
        if not busy:
            self._drop()
            self._give_back()

    def _drop(self) -> None:
        if self._decoding is not None:
            self._decoding.close()
            self._decoding = None

    def _give_back(self) -> None:
        held, self.bytes = self.bytes, 0
        if held:
            self.budget.release(held)


@contextlib.asynccontextmanager
async def holding(budget: WindowBudget | None = None) -> AsyncIterator[WindowHold]:
    """A window hold, from ``budget`` (the process's, ``WINDOWS``, by default) for the read
    the block makes, given back as the block ends."""
    hold = WindowHold(WINDOWS if budget is None else budget)
    try:
        yield hold
    finally:
        hold.close()
