"""A log's history is read and rendered in a thread, not on kukeond's event loop: a chunk is
a whole file (up to containerLogMaxSize, 10 MiB), and four readers of a 30 MB log rendered
on the loop held every other request up for 1.4 s (``/healthz`` measured by hand)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from kukeon.api import Kind
from kukeon.daemon import noderoutes
from kukeon.runtime.containerd.crilog import LogRecord, RenderOptions, render
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_key
from tests.integration.daemon.test_transfer_routes import _cell, cell_url, session

pytestmark = pytest.mark.integration

TALKER = ["-c", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -n 50000; exec sleep 600"]


async def test_a_logs_history_is_rendered_off_the_event_loop(
    kukeond: Kukeond, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_loop: list[int] = []

    def watched(records: Iterable[LogRecord], options: RenderOptions, *, open_line: bool) -> bytes:
        try:
            asyncio.get_running_loop()
            on_loop.append(1)
        except RuntimeError:
            pass  # a worker thread: no loop runs there
        return render(records, options, open_line=open_line)

    monkeypatch.setattr(noderoutes, "render", watched)
    k = kukeond
    await k.hierarchy()
    await _cell(k, "talker", TALKER)
    try:
        async with session(k) as http:
            url = f"{cell_url(k, 'talker')}/log"
            for _ in range(50):  # until the 50,000 lines are all written
                async with http.get(url) as response:
                    assert response.status == 200
                    text = await response.text()
                if text.count("\n") >= 50_000:
                    break
                await asyncio.sleep(0.2)
            assert text.count("\n") == 50_000
            assert text.startswith("0123456789abcdefghijklmnopqrstuvwxyz\n")
    finally:
        await k.registry.delete(Kind.CELL, cell_key(k, "talker"))
    assert not on_loop, f"{len(on_loop)} history chunks rendered on the event loop"
