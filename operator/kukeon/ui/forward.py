"""The local port-forward of ``kukectl ui``: 127.0.0.1:<port> to kukeond's unix socket.

Whoever opens the unix socket is kukeond's local admin (``kukeon.apiserver.auth``), and the
socket's mode and group say who may. A TCP port on 127.0.0.1 has no such owner: every
local user, and any web page a browser on this host visits, can connect to it. So the
forward does not pass on the socket owner's rights to whoever connects:

- it makes a random token (256 bits) for each run and forwards an API request only with
  ``Authorization: Bearer <that token>`` (compared in constant time), which it then drops:
  kukeond sees a request on its socket, as from kukectl;
- the URL it prints carries the token in its fragment (``/ui/#token=...``), which a browser
  never sends to a server, so it appears in no request line and no log; the page moves it
  into the tab's sessionStorage and takes it out of the address bar;
- the page and its static files (nothing secret: the same as kukeond serves to anyone on
  its TLS listener) go through without the token;
- a request whose ``Host`` is not this forward's own address is refused, so a web page
  that rebinds a DNS name to 127.0.0.1 cannot reach it under its own origin;
- a request with an ``Origin`` other than the forward's own is refused (403): the console
  is served by the forward itself, so its requests are same-origin, and no other web
  page's request (a form's POST needs no CORS preflight) is relayed, token or not;
- ``Expect`` is kept aside (``kukeon.httpexpect``): ``100 Continue`` only once a request
  passed these checks and its body is within ``MAX_BODY_BYTES``, a 417 Status for any
  other expectation.

The token lives as long as the forward: stopping ``kukectl ui`` ends it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import socket
from pathlib import Path

import aiohttp
from aiohttp import web

from kukeon.cancelling import cancel_and_wait
from kukeon.httpexpect import ExpectAppRunner, expectations, failure_status, send_continue

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
SHUTDOWN_SECONDS = 2.0
UPSTREAM = "http://kukeond"
"""The URL's host is only a name for the unix socket; the path is the request's own."""

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "expect",
    }
)


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (kukectl does not load the API
    server for ``kukeon.apiserver.auth``'s twin of this)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def is_public_path(path: str) -> bool:
    """The page and its static files: served to anyone, as on kukeond's TLS listener.

    ``path`` is the request's decoded path. One with a ``.`` or ``..`` segment (written
    as such, percent-encoded or made with ``%2F``) is never public: the relay's client
    resolves dot segments, so ``/ui/static/../../apis/...`` would reach the API as the
    local admin without the token."""
    if any(part in (".", "..") for part in path.split("/")):
        return False
    return path in ("/ui", "/ui/") or path.startswith("/ui/static/")


def _forwarded_headers(headers: aiohttp.typedefs.LooseHeaders) -> dict[str, str]:
    return {
        name: value
        for name, value in dict(headers).items()
        if name.lower() not in _HOP_BY_HOP and name.lower() != "authorization"
    }


class ConsoleForward:
    """An HTTP server on 127.0.0.1 that relays the console's requests to the unix socket."""

    def __init__(self, *, socket_path: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.socket_path = socket_path
        self.host = host
        self.requested_port = port
        self.port = 0
        self.token = secrets.token_urlsafe(32)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._relays: set[asyncio.Task[object]] = set()
        """The relays under way: a watch's or a followed log's runs until it is ended."""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/ui/#token={self.token}"

    async def start(self) -> None:
        connector = aiohttp.UnixConnector(path=str(self.socket_path))
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[expectations])
        app.router.add_route("*", "/{tail:.*}", self.relay)
        self._runner = ExpectAppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.requested_port))
        except OSError:
            listener.close()
            await self.close()
            raise
        self.port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener).start()

    async def close(self) -> None:
        # The relays of open watches and followed logs first: closing the client session
        # does not end a response being read, and the server would wait out its shutdown
        # timeout for them (twice: 4 s on every Ctrl-C with the console open).
        await cancel_and_wait(*self._relays)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why the request is not forwarded, as the answer to give; None to forward it."""
        own = {f"{self.host}:{self.port}", f"localhost:{self.port}"}
        if request.host not in own:
            return _answer(403, "Forbidden: not this forward's address")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {f"http://{host}" for host in own}:
            # A browser names the page that made the request; only the console's own.
            return _answer(403, f"Forbidden: a request from the web page at {origin[:100]!r}")
        if is_public_path(request.path):
            return None
        token = bearer_token(request.headers.get("Authorization"))
        # surrogateescape: header bytes that are not UTF-8 arrive as lone surrogates.
        sent = token.encode("utf-8", "surrogateescape") if token is not None else None
        if sent is None or not hmac.compare_digest(sent, self.token.encode()):
            why = "the token kukectl ui printed (in the URL) is required"
            return _answer(401, f"Unauthorized: {why}")
        return None

    async def relay(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        task = asyncio.current_task()
        assert task is not None
        self._relays.add(task)
        try:
            return await self._relay(request)
        finally:
            self._relays.discard(task)

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body: bytes | None = None
        if request.can_read_body:
            length = request.content_length
            too_large = f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
            if length is not None and length > MAX_BODY_BYTES:
                return _answer(413, too_large)  # before its 100 Continue: never sent
            await send_continue(request)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:  # a chunked body over the limit
                return _answer(413, too_large)
        response = web.StreamResponse()
        try:
            async with self._session.request(
                request.method,
                UPSTREAM + request.rel_url.raw_path_qs,
                headers=_forwarded_headers(request.headers),
                data=body,
                allow_redirects=False,
            ) as upstream:
                response.set_status(upstream.status)
                response.headers.update(_forwarded_headers(upstream.headers))
                await response.prepare(request)
                # A watch or a followed log streams: each chunk goes on as it comes.
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
        except aiohttp.ClientError as exc:
            log.debug("kukeond's socket %s: %s", self.socket_path, exc)
            if not response.prepared:
                return _answer(502, f"kukeond's socket {self.socket_path} does not answer: {exc}")
            return response  # the stream ends where kukeond's did
        await response.write_eof()
        return response


def _answer(code: int, message: str) -> web.Response:
    return web.json_response(failure_status(code, message), status=code)
