"""The FIFOs of a process's stdio, read and written by the event loop, never for ever.

exec, attach and cp carry bytes between a WebSocket and a process in a container through
FIFOs the containerd shim holds the other end of (``runtime.containerd.tasks.FifoIO``,
``ttyio``). Every descriptor here is non-blocking and waited on by the event loop (no
thread is held), and every wait has an end:

- :func:`write_all` gives up (:class:`InputStalledError`) when the process has not taken ``data``
  within its deadline: a process that never reads its input cannot hold a session for ever;
- :func:`read_output` ends at the FIFO's end of file, which the shim gives once it has
  copied the process's last output and closed its writer, so the tail is never cut;
  after the process exited, a FIFO that stays silent for ``quiet`` seconds (a background
  child still holding the process's stdout, say) is taken as ended too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

CHUNK = 64 * 1024
AFTER_EXIT_QUIET_SECONDS = 2.0
"""After the process exited, how long its output may stay silent before it is taken as
ended though the shim still holds the FIFO (it closes it once it has copied everything)."""
NO_WRITER_POLL_SECONDS = 0.05


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def _until_ready(
    fd: int,
    add: Callable[..., Any],
    remove: Callable[[int], Any],
    *,
    or_done: asyncio.Future[Any] | None = None,
    within: float | None = None,
) -> bool:
    """Wait until ``fd`` is ready (``add``: the loop's add_reader or add_writer), ``or_done``
    finishes, or ``within`` seconds pass; whether ``fd`` is ready."""
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    add(fd, _wake, ready)
    try:
        waits: list[asyncio.Future[Any]] = [ready] if or_done is None else [ready, or_done]
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        return ready.done()
    finally:
        remove(fd)
        ready.cancel()


class InputStalledError(Exception):
    """The process did not take its input in time (see :func:`write_all`); not an
    ``OSError``, which a writer racing the process's exit ignores."""


async def write_all(fd: int, data: bytes, *, within: float) -> None:
    """Write all of ``data`` to the non-blocking ``fd``, waiting while it is full.

    :class:`InputStalledError` when it is not all taken within ``within`` seconds (what
    was taken stays taken); ``OSError`` when the reader is gone (``EPIPE``).
    """
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    try:
        async with asyncio.timeout(within):
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    await _until_ready(fd, loop.add_writer, loop.remove_writer)
    except TimeoutError:
        raise InputStalledError(
            f"the process did not read its input for {within:g}s: the session ends"
        ) from None


async def read_output(
    fd: int,
    exited: asyncio.Future[Any],
    *,
    quiet: float = AFTER_EXIT_QUIET_SECONDS,
) -> bytes:
    """The next bytes of a FIFO the shim writes the process's output to; b"" at its end.

    The end is the FIFO's end of file once the process has ``exited`` (before that, a FIFO
    without a writer is one the shim has not opened yet: it is polled), or ``quiet``
    seconds without a byte after the exit.
    """
    loop = asyncio.get_running_loop()
    while True:
        try:
            data: bytes | None = os.read(fd, CHUNK)
        except BlockingIOError:
            data = None
        except OSError:
            return b""
        if data:
            return data
        if data == b"":
            if exited.done():
                return b""
            # No writer (epoll would report the hang-up at once, so poll): not yet opened.
            await asyncio.wait([exited], timeout=NO_WRITER_POLL_SECONDS)
        elif exited.done():
            if not await _until_ready(fd, loop.add_reader, loop.remove_reader, within=quiet):
                return b""
        else:
            await _until_ready(fd, loop.add_reader, loop.remove_reader, or_done=exited)
