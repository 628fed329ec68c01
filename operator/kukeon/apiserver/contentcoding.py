"""The request body's Content-Encoding: gzip and deflate are read, anything else is a 415.

aiohttp's parser decodes every coding it has a library for, and ``backports.zstd`` (which
kukeond needs for image layers) gives it zstd: a zstd body costs its decoder a window of up
to 128 MiB, chosen by the sender in the frame header, before any handler (authentication
included) sees the request. Only the codings whose decoders cost a fixed, small amount are
accepted; a request with another is refused at once and its connection closed, so nothing
more of its body is read (RFC 9110 §15.5.16: 415 with ``Accept-Encoding``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from kukeon.api.meta import quote
from kukeon.apiserver.status import ApiError, status_response

READ_CODINGS = frozenset({"identity", "gzip", "deflate"})
"""The body codings the API reads: the ones aiohttp's parser decodes, less zstd and br
(one each, written exactly: aiohttp decodes no stacked codings, nor ``x-gzip``)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def content_coding_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    coding = request.headers.get("Content-Encoding")
    if coding is None or coding.lower() in READ_CODINGS:
        return await handler(request)
    refused = status_response(
        ApiError(
            415,
            f"Content-Encoding {quote(coding, 40)} is not read: send the body as is, "
            "gzip or deflate",
        )
    )
    refused.headers["Accept-Encoding"] = "gzip, deflate"
    refused.force_close()  # nothing more of the body is read, or decoded
    return refused
