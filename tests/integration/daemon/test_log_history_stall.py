"""A long log's history is read and rendered in bounded chunks off kukeond's event loop and
sent as it goes: while a client reads the whole history of a 16 MB log (two files: one
rotated at containerLogMaxSize, 10 MiB), and a tail of it with timestamps, the loop is never
held for long, four readers at once. Measured by a coroutine on kukeond's loop (the fixture
runs kukeond in this test's process) that sleeps 5 ms at a time and records how late it
wakes up; before, a whole file was read, rendered and written at once: the loop was held
230-400 ms (1.1 s with CPython's default collector thresholds, which kukeond does not run
with)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from kukeon.api import Kind
from kukeon.daemon import gcpolicy
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_key
from tests.integration.daemon.test_transfer_routes import _cell, cell_url, session

pytestmark = pytest.mark.integration

LINE = "0123456789" * 11  # 110 bytes and a newline; ~150 bytes a record on file
LINES = 110_000
TALKER = ["-c", f"yes {LINE} | head -n {LINES}; echo done; exec sleep 600"]
TICK = 0.005
READERS = 4
"""At once: three read the whole history, one its last 100,000 lines with their times."""
WORST_LATENESS = 0.15
"""The longest the ticking coroutine may wake up late. A chunk is 256 KiB of a file, a few
ms of work; the rest is the threads' share of the interpreter on a busy machine (74 ms at
worst seen at a load of 23 on 2 cores). Whole files at once: 230-400 ms, young collections
walking the readers' whole files of records (189 ms) among them."""


class Ticker:
    """How late a coroutine sleeping ``TICK`` at a time wakes up, at worst."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(TICK)
            self.worst = max(self.worst, loop.time() - start - TICK)

    async def stop(self) -> float:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.worst


async def _read(k: Kukeond, params: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Lines, first and last line of the log's text, read as it comes (nothing kept)."""
    lines, first, last = 0, b"", b""
    async with (
        session(k) as http,
        http.get(f"{cell_url(k, 'talker')}/log", params=params) as response,
    ):
        assert response.status == 200
        async for data in response.content.iter_chunked(64 * 1024):
            first = first or data.split(b"\n", 1)[0]
            lines += data.count(b"\n")
            last = (last + data)[-200:]
    return lines, first, last.rstrip(b"\n").rsplit(b"\n", 1)[-1]


async def test_reading_a_long_logs_history_does_not_hold_the_event_loop(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "talker", TALKER)
    # kukeond's collector policy, as its main applies it after startup (the fixture does
    # not): with CPython's defaults, this process's (kukeond's and the test's objects) full
    # collections alone hold the loop 400 ms, whatever allocates.
    thresholds = gc.get_threshold()
    gcpolicy.apply_after_startup()
    try:
        async with asyncio.timeout(60):
            while (await _read(k, {"tailLines": "1"}))[2] != b"done":  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        ticker = Ticker()
        *wholes, tail = await asyncio.gather(
            *(_read(k, {}) for _ in range(READERS - 1)),
            _read(k, {"tailLines": "100000", "timestamps": "true"}),
        )
        worst = await ticker.stop()
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        await k.registry.delete(Kind.CELL, cell_key(k, "talker"))
    assert wholes == [(LINES + 1, LINE.encode(), b"done")] * (READERS - 1)
    assert tail[0] == 100_000
    assert tail[1].endswith(b"Z " + LINE.encode())
    assert tail[2].endswith(b"Z done")
    assert worst < WORST_LATENESS, f"the event loop was held {worst * 1000:.0f} ms"
