"""Status objects for the errors aiohttp answers itself, before any middleware runs.

A request aiohttp's HTTP parser cannot read (a request line or header over its limits, a
malformed Content-Length, garbage instead of HTTP) never reaches the application: the
connection's ``RequestHandler.handle_error`` answers it with a plain-text body and logs a
traceback at ERROR. Here that one method is replaced, through the documented constructor
chain (``AppRunner`` -> ``Server`` -> ``RequestHandler``), so such a request gets a
Kubernetes ``Status`` like any other error -- 414 for a URL over the limit, 431 for headers
-- and a client's malformed request is logged at debug level without a traceback.

The same handler cuts off a client that takes nothing of what it is sent for
``STALL_SECONDS``: the connection's buffer stays over its high-water mark (asyncio pauses
the writer), or the connection was closed with an answer's rest still unsent (asyncio
closes a transport only once that is taken). Before, such a client (a watch, a session or
a large list it never read) held the answering task and the descriptor for as long as it
kept its end open, the task blocked in a write no request deadline covered, or the
descriptor kept after its request, and its place in ``inflight``'s bounds, had ended, so
one client could hold any number of connections.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_request import BaseRequest

from kukeon.apiserver.status import ApiError
from kukeon.httpexpect import ExpectAppRunner, ExpectRequestHandler, ExpectServer

log = logging.getLogger(__name__)

MAX_LINE_SIZE = 8190
"""Longest request line (method, URL, version) in bytes; a longer URL is a 414."""
MAX_FIELD_SIZE = 8190
"""Longest header line in bytes; a longer one is a 431."""
MAX_HEADERS = 128
"""Most headers a request may carry; more is a 431."""
HEADER_TIMEOUT = 30.0
"""Seconds a new connection has to send its first request's line and headers (as
kube-apiserver's ReadHeaderTimeout, 32 s); a connection still short of them is closed.
aiohttp's own timer at a connection's start closes only a connection that has had a
keep-alive answer, so one trickling its headers (slowloris) was held for ever."""
KEEPALIVE_TIMEOUT = 75.0
"""Seconds a connection may stay idle after an answer (or trickle its next request's
headers) before it is closed. aiohttp's default was 75 s and is 3630 s since 3.14: idle
connections, a slowloris's second request among them, were held an hour each."""
STALL_SECONDS = 30.0
"""Seconds a client may leave what it is sent unread (the connection's buffer over its
high-water mark, or a closed connection's rest unsent) before its connection is aborted."""

PARSER_LIMITS: dict[str, Any] = {
    "max_line_size": MAX_LINE_SIZE,
    "max_field_size": MAX_FIELD_SIZE,
    "max_headers": MAX_HEADERS,
}


def parse_error(status: int, exc: BaseException | None) -> ApiError:
    """The Status for a request aiohttp could not parse or answer itself."""
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        if isinstance(line, bytes | bytearray) and line[:1] in (b"/", b"h", b"H", b"*"):
            return ApiError(
                414,
                f"the request URL is longer than the limit of {MAX_LINE_SIZE} bytes",
                reason="RequestURITooLong",
            )
        return ApiError(
            431,
            f"a request header is longer than the limit of {MAX_FIELD_SIZE} bytes",
            reason="RequestHeaderFieldsTooLarge",
        )
    if isinstance(exc, BadHttpMessage):
        message = str(getattr(exc, "message", "") or "malformed HTTP request")
        if "Too many headers" in message:
            return ApiError(
                431,
                f"the request has more than {MAX_HEADERS} headers",
                reason="RequestHeaderFieldsTooLarge",
            )
        first_line = message.strip().splitlines()[0] if message.strip() else message
        return ApiError(400, f"malformed HTTP request: {first_line[:200]}")
    if status == 504:
        return ApiError(504, "the request did not complete in time")
    if status >= 500:
        return ApiError(500, "internal error answering the request; see the kukeond log")
    return ApiError(status, "the request could not be processed")


def _unsent(transport: asyncio.Transport) -> int:
    """Bytes ``transport`` holds for its client yet; 0 once it holds nothing to send them.

    asyncio's TLS transport closed a second time (a malformed request's answer closes it,
    then the client's hang-up) drops its TLS protocol, and its ``get_write_buffer_size``
    then raises AttributeError: it ended the connection's task with an error asyncio
    logged at ERROR. What the TLS shutdown still sends is bounded by its own timeout.
    """
    try:
        return transport.get_write_buffer_size()
    except AttributeError:
        return 0


class StatusRequestHandler(ExpectRequestHandler):
    """aiohttp's connection handler, answering its own errors with a Status object, and
    closing a connection that has not sent its first request's headers in time (and one
    answered before its ``100 Continue``: ``ExpectRequestHandler``)."""

    __slots__ = ("_connection", "_header_timer", "_stall_timer")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._header_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            HEADER_TIMEOUT, self._headers_late
        )
        # aiohttp drops its reference when it closes the connection: kept to abort it.
        self._connection: asyncio.Transport | None = cast(asyncio.Transport, transport)
        self._stall_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)

    async def start(self) -> None:
        try:
            await super().start()
        finally:
            self._stall_if_unsent()  # the last request is done: the connection is closed

    def pause_writing(self) -> None:
        super().pause_writing()
        self._start_stall_timer()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._stall_if_unsent()

    def _stall_if_unsent(self) -> None:
        """A closed connection's client has ``STALL_SECONDS`` to take what is left."""
        transport = self._connection
        closed = transport is not None and transport.is_closing()
        if closed and transport is not None and _unsent(transport) > 0:
            self._start_stall_timer()

    def _start_stall_timer(self) -> None:
        if self._stall_timer is None:
            self._stall_timer = asyncio.get_running_loop().call_later(STALL_SECONDS, self._stalled)

    def _stalled(self) -> None:
        self._stall_timer = None
        transport = self._connection
        if transport is not None and _unsent(transport) > 0:
            log.info(
                "aborting a connection whose client read nothing of its answer for %gs",
                STALL_SECONDS,
            )
            transport.abort()  # connection_lost follows: a write waiting on it fails

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self._request_count > 0:
            self._header_timer.cancel()  # a whole request came: its handler takes over
            self._header_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._connection = None
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._request_count == 0 and self.transport is not None:
            log.debug("closing a connection that sent no whole request in %gs", HEADER_TIMEOUT)
            self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            log.debug("malformed request from %s: %s", request.remote, message or exc)
        if request.writer.output_size > 0:
            # Part of a response went out already: the connection is beyond repair.
            raise ConnectionError("response already started, cannot send an error Status")
        error = parse_error(status, exc)
        response = web.json_response(error.to_status(), status=error.code)
        response.force_close()
        return response


class StatusServer(ExpectServer):
    """aiohttp's low-level server, with ``StatusRequestHandler`` for every connection."""

    handler_class = StatusRequestHandler


class StatusAppRunner(ExpectAppRunner):
    """``web.AppRunner`` whose server answers parse errors with Status objects (and keeps
    ``Expect`` aside for the middlewares, ``kukeon.httpexpect``, not answered by aiohttp),
    and closes a connection idle for ``KEEPALIVE_TIMEOUT``."""

    server_class = StatusServer

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT)
        super().__init__(app, **kwargs)


__all__ = [
    "KEEPALIVE_TIMEOUT",
    "MAX_FIELD_SIZE",
    "MAX_HEADERS",
    "MAX_LINE_SIZE",
    "PARSER_LIMITS",
    "STALL_SECONDS",
    "StatusAppRunner",
    "parse_error",
]
