"""A watcher whose connection closes while its stream is being written ends the watch
quietly: no error logged, no 500 (the server once logged aiohttp's "Cannot write to closing
transport" as an unhandled error when a browser tab went away mid-write)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import ClientConnectionResetError, web
from aiohttp.test_utils import TestClient, TestServer

from kukeon.apiserver.watchstream import WatchResponder

LINE = b'{"type":"MODIFIED","object":{}}\n'


async def test_a_write_to_a_closing_connection_ends_the_watch_quietly(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue: asyncio.Queue[int | BaseException | None] = asyncio.Queue()
    outcome: list[str] = []
    ended = asyncio.Event()
    written = 0
    write = web.StreamResponse.write

    async def write_then_fail(response: web.StreamResponse, data: bytes) -> None:
        # aiohttp raises this from write() once the transport is closing
        nonlocal written
        written += 1
        if written > 1:
            raise ClientConnectionResetError("Cannot write to closing transport")
        await write(response, data)

    async def handle(request: web.Request) -> web.StreamResponse:
        responder: WatchResponder[int] = WatchResponder(
            kind="Cell",
            encode=lambda revision: (revision, LINE),
            bookmark_interval=60,
            start_grace=0,
            closing=None,
        )
        try:
            response = await responder.respond(
                request, queue, initial=[{"x": "first"}], start=0, stream_for=None
            )
        except BaseException as error:
            outcome.append(type(error).__name__)
            raise
        finally:
            ended.set()
        outcome.append("returned")
        return response

    app = web.Application()
    app.router.add_get("/watch", handle)
    monkeypatch.setattr(web.StreamResponse, "write", write_then_fail)
    caplog.set_level(logging.DEBUG)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/watch")
        assert (await response.content.readline()).startswith(b'{"type":"ADDED"')
        queue.put_nowait(1)  # a change: its write meets the closing connection
        async with asyncio.timeout(10):
            await ended.wait()
        response.close()
    assert outcome == ["returned"]
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []
