"""A client that leaves before its stream's headers are written is no server error.

The client's end of stream closes the transport at once; its ``connection_lost`` (which
unsets ``request.transport``) runs one loop iteration later. A handler resumed in between
(on a busy loop, its thread's answer and the hang-up come in the same iteration: a log
stream's first chunk) writes to a transport that is closing but still set, and aiohttp
raises "Cannot write to closing transport". The errors middleware took a hang-up only
where the transport was already unset: this one was an ERROR with a traceback (seen once
in test_streams_left_mid_write, on a log follow) and a 500."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from kukeon.apiserver.app import _errors_middleware
from kukeon.apiserver.settings import ApiSettings


async def test_headers_written_after_the_client_left_log_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    still_set: list[bool] = []
    answered: list[int] = []
    done = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        # Resume in the iteration right after the hang-up closed the transport, as a
        # thread's answer does when both come in one iteration of a busy loop.
        # One iteration at a time (sleep(0)), not an Event: the point is where it resumes.
        while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
            await asyncio.sleep(0)
        still_set.append(request.transport is not None)
        response = web.StreamResponse()
        await response.prepare(request)  # writes the headers: the transport is closing
        await response.write(b"never read\n")
        return response

    async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        answered.append(response.status)
        done.set()
        return response

    app = web.Application(
        middlewares=[web.middleware(counted), _errors_middleware(ApiSettings(), None)]
    )
    app.router.add_get("/stream", stream)
    async with TestServer(app) as server:
        assert server.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: kukeond\r\n\r\n")
        await writer.drain()
        writer.close()  # leaves before any answer
        await writer.wait_closed()
        async with asyncio.timeout(10):
            await done.wait()
    assert still_set == [True]  # the state this is about: closing, not yet unset
    assert answered == [400]  # "the client closed the connection", sent nowhere
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
