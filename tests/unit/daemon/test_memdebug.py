"""kukeond's heap reports on SIGUSR2 (kukeon.daemon.memdebug)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.daemon.memdebug import HeapReports, install

GROWN: list[bytes] = []


@pytest.fixture
def tracing() -> Iterator[None]:
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start(5)
    try:
        yield
    finally:
        GROWN.clear()
        if not already:
            tracemalloc.stop()


def grow() -> None:
    GROWN.extend(bytes(4096) for _ in range(512))  # 2 MiB from this line


def test_nothing_is_written_without_tracing(tmp_path: Path) -> None:
    if tracemalloc.is_tracing():
        pytest.skip("this interpreter traces already")
    assert HeapReports(tmp_path).write() is None
    assert list(tmp_path.iterdir()) == []


def test_reports_are_numbered_private_and_name_what_grew(tmp_path: Path, tracing: None) -> None:
    reports = HeapReports(tmp_path, top=5)
    first = reports.write()
    grow()
    second = reports.write()

    assert first == tmp_path / "tracemalloc-1.txt"
    assert second == tmp_path / "tracemalloc-2.txt"
    for path in (first, second):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "since tracing started" in first.read_text()
    text = second.read_text()
    assert "since the previous report" in text
    assert "== top 5 by lineno ==" in text
    assert "== top 5 by traceback ==" in text
    by_line = text.split("== top 5 by traceback ==")[0]
    assert f"{Path(__file__).name}:" in by_line  # grow()'s line is among the top five
    assert "+2" in by_line  # ...with its 2 MiB (+2048 KiB or more)
    assert "bytes(4096)" not in text  # places, not source text (linecache stays empty)


async def test_sigusr2_writes_a_report_and_is_uninstalled(tmp_path: Path, tracing: None) -> None:
    uninstall = install(asyncio.get_running_loop(), tmp_path)
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        path = tmp_path / "tracemalloc-1.txt"
        for _ in range(600):  # written in a worker thread
            if path.exists() and "object types" in path.read_text():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"{path} was not written within 30 s")
    finally:
        uninstall()
    assert signal.getsignal(signal.SIGUSR2) in (signal.SIG_DFL, None)
