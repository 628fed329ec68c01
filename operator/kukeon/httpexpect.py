"""``Expect: 100-continue``, answered when a handler reads the body, not before: for every
HTTP listener of kukeon (the API server, kukeond's ``/metrics``, ``kukectl ui``'s forward).

aiohttp answers an ``Expect`` header before any middleware runs (each route's expect
handler): ``100 Continue`` at once for ``100-continue``, so a client told to go on sent a
body the handler then refused unread (413 over the body limit, 401, 403), and a plain-text
417 for any other value. Here the header is taken off each HTTP/1.1 request as it is made
(``ExpectAppRunner``'s request factory; aiohttp then has nothing to answer) and kept on
the request under ``EXPECT_KEY``:

- ``unmet_expectation`` names any value but ``100-continue``, which a listener answers
  with a 417 Status (RFC 9110): ``expectations`` here, ``kukeon.apiserver.expect`` for
  the API's errors middleware;
- ``send_continue``, called by whatever reads a body, sends the interim ``100 Continue``
  the first time, once the handler has checked what it checks before reading (as Go's
  net/http, kube-apiserver's server, sends it at the first read of the body);
- an answer sent without it closes the connection at once, without aiohttp's lingering
  read of a body that is not coming (``ExpectRequestHandler.finish_response``): the
  client may or may not send the body it announced, and the connection is only safe
  closed.

It loads aiohttp's server and nothing of kukeon's server side: kukectl imports it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_protocol import RequestHandler, _RequestFactory
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from multidict import CIMultiDict, CIMultiDictProxy

log = logging.getLogger(__name__)

CONTINUE = "100-continue"
EXPECT_KEY = web.RequestKey("kukeon_expect", str)
"""The ``Expect`` header a request came with, until its ``100 Continue`` is sent."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def expect_aside(factory: _RequestFactory) -> _RequestFactory:
    """``factory`` making requests whose ``Expect`` header is kept under ``EXPECT_KEY``
    instead of in their headers, where aiohttp would answer it before the middlewares."""

    def make(message: RawRequestMessage, *args: object) -> web.BaseRequest:
        expect = message.headers.get(hdrs.EXPECT)
        if expect is None or message.version < HttpVersion11:
            return factory(message, *args)  # type: ignore[arg-type]
        headers = CIMultiDict(message.headers)
        headers.popall(hdrs.EXPECT)
        message = message._replace(
            headers=CIMultiDictProxy(headers),
            raw_headers=tuple(
                (name, value) for name, value in message.raw_headers if name.lower() != b"expect"
            ),
        )
        request = factory(message, *args)  # type: ignore[arg-type]
        request[EXPECT_KEY] = expect
        return request

    return make


class ExpectRequestHandler(RequestHandler):
    """aiohttp's connection handler, closing the connection after an answer given while
    the request's ``100 Continue`` is still owed."""

    __slots__ = ()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if EXPECT_KEY in request or _coded_body_unread(request) or resp.status == 408:
            # Answered before its 100 Continue: the client holds the body back, so the
            # connection closes now, not after aiohttp's 10 s lingering read of nothing.
            # A coded body answered unread is not read on either (_coded_body_unread), nor
            # one that stopped coming (a 408).
            resp.force_close()
            self._lingering_time = 0.0
        return await super().finish_response(request, resp, start_time)


def _coded_body_unread(request: BaseRequest) -> bool:
    """Whether the request's body is gzip or deflate coded and was answered unread (a 401,
    403, 415...). aiohttp's lingering read would decode it only to drop it, and log a body
    that does not decode as an unhandled exception with its traceback: the connection
    closes instead, as after a 413."""
    coding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    return coding not in ("", "identity") and not request.content.is_eof()


class ExpectServer(Server):
    """aiohttp's low-level server, with ``handler_class`` for every connection."""

    handler_class: type[RequestHandler] = ExpectRequestHandler

    def __call__(self) -> RequestHandler:
        return self.handler_class(self, loop=self._loop, **self._kwargs)


class ExpectAppRunner(web.AppRunner):
    """``web.AppRunner`` whose requests keep ``Expect`` aside (``server_class`` serves)."""

    server_class: type[ExpectServer] = ExpectServer

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        return self.server_class(
            server.request_handler,
            request_factory=expect_aside(server.request_factory),
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def unmet_expectation(request: web.BaseRequest) -> str | None:
    """Why the request's ``Expect`` cannot be met (a 417), or None."""
    expect = request.get(EXPECT_KEY)
    if expect is None or expect.strip().lower() == CONTINUE:
        return None
    return f"the Expect header {expect[:100]!r} is not one this server meets: only {CONTINUE} is"


def failure_status(code: int, message: str, reason: str = "") -> dict[str, object]:
    """A Kubernetes ``Status`` of a failure, for a listener without the API's errors."""
    status: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "message": message,
    }
    if reason:
        status["reason"] = reason
    return status


@web.middleware
async def expectations(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A 417 Status for an expectation other than ``100-continue``."""
    message = unmet_expectation(request)
    if message is not None:
        return web.json_response(failure_status(417, message, "ExpectationFailed"), status=417)
    return await handler(request)


async def send_continue(request: web.BaseRequest) -> None:
    """Tell a client waiting with ``Expect: 100-continue`` to send its body (once; nothing
    for any other request). Call it just before reading the body."""
    if request.pop(EXPECT_KEY, None) is None:
        return
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    # Not the answer itself: an error Status may still be sent in its place.
    request.writer.output_size = 0


async def body_chunks(request: web.BaseRequest, size: int) -> AsyncIterator[bytes]:
    """The request's body in chunks of ``size`` bytes, its ``100 Continue`` sent first."""
    await send_continue(request)
    async for chunk in request.content.iter_chunked(size):
        yield chunk


__all__ = [
    "CONTINUE",
    "EXPECT_KEY",
    "ExpectAppRunner",
    "ExpectRequestHandler",
    "ExpectServer",
    "body_chunks",
    "expect_aside",
    "expectations",
    "failure_status",
    "send_continue",
    "unmet_expectation",
]
