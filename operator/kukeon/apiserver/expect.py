"""``Expect: 100-continue``, answered when a handler reads the body, not before.

aiohttp answers an ``Expect`` header before any middleware runs (each route's expect
handler): ``100 Continue`` at once for ``100-continue``, so a client told to go on sent a
body the handler then refused unread (413 over the body limit, 401, 403), and a plain-text
417 for any other value. Here the header is taken off each HTTP/1.1 request as it is made
(``lowlevel.StatusAppRunner``'s request factory; aiohttp then has nothing to answer) and
kept on the request under ``EXPECT_KEY``:

- ``expectations`` (a middleware inside the errors one) answers any value but
  ``100-continue`` with a 417 Status naming it, as RFC 9110 says;
- ``send_continue``, called by whatever reads a body, sends the interim ``100 Continue``
  the first time, once the handler has checked what it checks before reading (as Go's
  net/http, kube-apiserver's server, sends it at the first read of the body);
- an answer sent without it closes the connection at once, without aiohttp's lingering
  read of a body that is not coming (``lowlevel.StatusRequestHandler.finish_response``):
  the client may or may not send the body it announced, and the connection is only safe
  closed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_protocol import _RequestFactory
from multidict import CIMultiDict, CIMultiDictProxy

from kukeon.api.meta import quote
from kukeon.apiserver.status import ApiError

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


@web.middleware
async def expectations(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A 417 Status for an expectation other than ``100-continue``."""
    expect = request.get(EXPECT_KEY)
    if expect is not None and expect.strip().lower() != CONTINUE:
        raise ApiError(
            417,
            f"the Expect header {quote(expect[:100])} is not one this server meets: only "
            f"{CONTINUE} is",
            reason="ExpectationFailed",
        )
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
    "EXPECT_KEY",
    "body_chunks",
    "expect_aside",
    "expectations",
    "send_continue",
]
