"""Opening the API's long-running requests: watches, followed streams, WebSocket sessions.

Each open is one attempt after another under the client's ``BusyRetry`` (``busy``): a 429
at the open (the token holder already has as many long-running requests open as the server
allows) is waited out and asked again, as ``ApiClient.request`` does for short requests,
and a refusal becomes the same ``ApiRequestError`` a request's would. Reading what is
opened is the caller's (``ApiClient.watch``, ``stream``, the exec and attach sessions).

aiohttp's WebSocket client drops the body of a refused upgrade: a 429 there is told in
this module's words (a 5xx with ``Retry-After`` is retried as ``busy`` says), the other
refusals are left to the caller as aiohttp raises them (kukectl asks the same path again
as a plain GET for the server's reason).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kukeon.client.busy import TOO_MANY_REQUESTS, BusyRetry
from kukeon.client.errors import (
    ApiRequestError,
    ServerUnreachable,
    decode_answer,
    malformed_answer,
)

if TYPE_CHECKING:
    import aiohttp

WEBSOCKET_MAX_MESSAGE = 1 << 20

_SERVER_REASONS = {503: "ServiceUnavailable", 504: "Timeout"}
"""Kubernetes' Status reasons of a refused upgrade's 5xx (another is ``InternalError``)."""

BUSY_SESSION_MESSAGE = (
    "the server refused to open the session: this token holder already has as many "
    "watches, followed logs and sessions open as the server allows "
    "(apiMaxLongRunningPerUser); close some"
)
"""A 429's message for a WebSocket upgrade, whose answer's body aiohttp does not keep."""


@contextlib.contextmanager
def reading_answer(request: str) -> Iterator[None]:
    """aiohttp's failures to read the answer to ``request`` (``"GET /apis/..."``) said as
    that answer's (``malformed_answer``): its head not HTTP (aiohttp's parser raises a bare
    ``ClientResponseError``: no status was read), its body cut short. A refused WebSocket
    upgrade (``WSServerHandshakeError``) is left to its caller."""
    import aiohttp  # on first use: kukectl's commands without a session never load it

    try:
        yield
    except aiohttp.WSServerHandshakeError:
        raise
    except aiohttp.ClientResponseError as exc:
        # The parser's message spans lines (the bytes it read, a caret under the fault).
        said = " ".join(word for word in str(exc.message).split() if word != "^")
        raise malformed_answer(request, f"not valid HTTP: {said}") from exc
    except aiohttp.ClientPayloadError as exc:
        raise malformed_answer(request, f"cut short: {exc}") from exc


async def open_response(
    session: aiohttp.ClientSession,
    busy: BusyRetry,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """The answer to a long-running request, its head read and a success (its body is the
    caller's to read, and to release with ``async with``); ApiRequestError for a
    refusal, a 429 only once the retries are spent."""

    async def once() -> aiohttp.ClientResponse:
        with reading_answer(f"{method} {path}"):
            response = await session.request(method, path, params=params)
            if response.status >= 400:
                async with response:
                    raw = await response.read()
                decode_answer(
                    response.status,
                    response.reason,
                    raw,
                    retry_after=response.headers.get("Retry-After"),
                )
        return response

    return await busy.call(once)


async def open_websocket(
    session: aiohttp.ClientSession,
    busy: BusyRetry,
    path: str,
    params: Sequence[tuple[str, str]],
    address: str,
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket on ``path``; a 429 at the upgrade, or a 5xx with ``Retry-After``, is
    retried (ApiRequestError once the retries are spent), another refusal raises aiohttp's
    ``WSServerHandshakeError``; no server at ``address`` (or one gone before it answered),
    ``ServerUnreachable`` naming it, as a request's."""
    import aiohttp  # on first use: kukectl's commands without a session never load it

    async def once() -> aiohttp.ClientWebSocketResponse:
        try:
            with reading_answer(f"GET {path} (a WebSocket upgrade)"):
                return await session.ws_connect(
                    path, params=list(params), max_msg_size=WEBSOCKET_MAX_MESSAGE
                )
        except aiohttp.ClientConnectionError as error:
            raise ServerUnreachable(f"cannot reach the kukeon API at {address}: {error}") from error
        except aiohttp.WSServerHandshakeError as error:
            retry_after = error.headers.get("Retry-After") if error.headers else None
            if error.status == TOO_MANY_REQUESTS:
                raise ApiRequestError(
                    TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    BUSY_SESSION_MESSAGE,
                    retry_after=retry_after,
                ) from error
            refusal = ApiRequestError(
                error.status,
                _SERVER_REASONS.get(error.status, "InternalError"),
                f"the WebSocket upgrade was refused: {error.message}",
                retry_after=retry_after,
            )
            if not busy.retries_on(refusal):
                raise
            raise refusal from error  # a 5xx that says when to ask again: asked again

    return await busy.call(once)


class WebSocketOpening:
    """``ApiClient.websocket``'s answer: awaited, the open WebSocket; used as ``async with``,
    the WebSocket, closed at the block's end (as aiohttp's own ``ws_connect``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        busy: BusyRetry,
        path: str,
        params: Sequence[tuple[str, str]],
        address: str,
    ) -> None:
        self._opening = (session, busy, path, params, address)
        self._socket: aiohttp.ClientWebSocketResponse | None = None

    def __await__(self) -> Generator[Any, None, aiohttp.ClientWebSocketResponse]:
        return open_websocket(*self._opening).__await__()

    async def __aenter__(self) -> aiohttp.ClientWebSocketResponse:
        self._socket = await open_websocket(*self._opening)
        return self._socket

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._socket is not None:
            await self._socket.close()
