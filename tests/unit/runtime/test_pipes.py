"""kukeon.runtime.containerd.pipes: FIFO writes and reads on the event loop, each with an end."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kukeon.runtime.containerd.pipes import InputStalledError, read_output, write_all


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _open(path: Path, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)


async def test_a_write_nobody_reads_ends_at_its_deadline(fifo: Path) -> None:
    reader = _open(fifo, os.O_RDONLY)  # a reader that never reads: the pipe fills up
    writer = _open(fifo, os.O_WRONLY)
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(InputStalledError, match=r"did not read its input for 0\.3s"):
            await write_all(writer, b"x" * (1 << 20), within=0.3)
        assert 0.25 < loop.time() - began < 5
        # The loop is not blocked meanwhile, and no thread was held: nothing to clean up.
        assert not asyncio.all_tasks() - {asyncio.current_task()}
    finally:
        os.close(writer)
        os.close(reader)


async def test_a_write_waits_while_the_reader_drains_then_completes(fifo: Path) -> None:
    reader = _open(fifo, os.O_RDONLY)
    writer = _open(fifo, os.O_WRONLY)
    payload = os.urandom(1 << 20)  # far more than the pipe's 64 KiB
    received = bytearray()

    async def drain() -> None:
        while len(received) < len(payload):
            try:
                received.extend(os.read(reader, 65536))
            except BlockingIOError:
                await asyncio.sleep(0.001)

    try:
        draining = asyncio.ensure_future(drain())
        await write_all(writer, payload, within=10)
        await draining
        assert bytes(received) == payload
    finally:
        os.close(writer)
        os.close(reader)


async def test_a_write_to_a_gone_reader_is_an_os_error(fifo: Path) -> None:
    reader = _open(fifo, os.O_RDONLY)
    writer = _open(fifo, os.O_WRONLY)
    os.close(reader)
    try:
        with pytest.raises(BrokenPipeError):
            await write_all(writer, b"data", within=1)
    finally:
        os.close(writer)


async def test_reading_gets_every_byte_until_the_writer_closes_after_the_exit(
    fifo: Path,
) -> None:
    reader = _open(fifo, os.O_RDONLY)
    writer = _open(fifo, os.O_WRONLY)
    exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    exited.set_result(None)  # the process exited; its output is still being copied
    payload = os.urandom(300_000)

    async def copy_late() -> None:
        view = memoryview(payload)
        while view:
            await asyncio.sleep(0.01)
            try:
                view = view[os.write(writer, view[:10_000]) :]
            except BlockingIOError:
                continue
        os.close(writer)  # the shim's close: the end of file

    copying = asyncio.ensure_future(copy_late())
    received = bytearray()
    try:
        while data := await read_output(reader, exited, quiet=2.0):
            received.extend(data)
        await copying
        assert bytes(received) == payload
    finally:
        os.close(reader)


async def test_reading_after_the_exit_ends_when_the_fifo_stays_quiet(fifo: Path) -> None:
    reader = _open(fifo, os.O_RDONLY)
    writer = _open(fifo, os.O_WRONLY)  # held, as by a background child: no end of file
    exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    try:
        os.write(writer, b"last words")
        exited.set_result(None)
        assert await read_output(reader, exited, quiet=0.2) == b"last words"
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await read_output(reader, exited, quiet=0.2) == b""
        assert 0.15 < loop.time() - began < 5
    finally:
        os.close(writer)
        os.close(reader)


async def test_reading_before_the_shim_opened_its_writer_waits_for_it(fifo: Path) -> None:
    reader = _open(fifo, os.O_RDONLY)
    exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def shim() -> None:
        await asyncio.sleep(0.1)
        writer = _open(fifo, os.O_WRONLY)
        os.write(writer, b"hello")
        os.close(writer)
        exited.set_result(None)

    started = asyncio.ensure_future(shim())
    try:
        assert await read_output(reader, exited) == b"hello"
        assert await read_output(reader, exited) == b""
        await started
    finally:
        os.close(reader)
