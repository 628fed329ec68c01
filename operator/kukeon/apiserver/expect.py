"""``Expect: 100-continue`` on the API: ``kukeon.httpexpect``, every listener's, with its
417 raised as an ``ApiError`` so the errors middleware answers it as any other error.

The header is kept aside by ``lowlevel.StatusAppRunner`` (an ``ExpectAppRunner``); the
``100 Continue`` is sent by whatever reads a body (``send_continue``, ``body_chunks``).
"""

from __future__ import annotations

from aiohttp import web

from kukeon.apiserver.status import ApiError
from kukeon.httpexpect import (
    EXPECT_KEY,
    Handler,
    body_chunks,
    expect_aside,
    send_continue,
    unmet_expectation,
)


@web.middleware
async def expectations(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A 417 Status for an expectation other than ``100-continue`` (inside the errors
    middleware, so for unknown paths too)."""
    message = unmet_expectation(request)
    if message is not None:
        raise ApiError(417, message, reason="ExpectationFailed")
    return await handler(request)


__all__ = [
    "EXPECT_KEY",
    "body_chunks",
    "expect_aside",
    "expectations",
    "send_continue",
]
