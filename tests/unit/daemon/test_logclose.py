"""kukeon.daemon.logclose: a log's end is its writer closing it, not a pause."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kukeon.daemon.logclose import WriterClosed


async def test_waits_for_the_writer_to_close_the_file(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"")
    closing = WriterClosed(log)
    try:
        writer = log.open("ab")
        log.read_bytes()  # a reader's close is no end
        assert not await closing.wait(within=0.2)

        async def late() -> None:
            await asyncio.sleep(0.3)
            writer.write(b"last words\n")
            writer.close()

        writing = asyncio.ensure_future(late())
        assert await closing.wait(within=10)
        await writing
        assert log.read_bytes() == b"last words\n"
        assert await closing.wait(within=0)  # once closed, it stays so
    finally:
        closing.close()


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        WriterClosed(tmp_path / "missing")
