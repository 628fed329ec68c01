"""Forwarding node-local requests to the kukeond that runs the cell.

Logs, exec, kill (and attach) of a cell are served by the kukeond of the cell's node
(``spec.nodeName``), because only that host has its containerd and state directory. Any
node's API accepts them: this module's middleware sits inside the API's authentication,
looks up the cell, and when the cell runs elsewhere it

1. authorises the *original* caller here, for the verb and realm of the route, exactly
   as the node-local handler would;
2. finds the other node's API in ``Node/<node>.status.apiEndpoint`` (the node must be
   ``Ready``);
3. sends the same request there over HTTPS, verified against ``fleetCaFile`` (for the
   address of the endpoint, or with ``fleetTlsServerDomain`` for the DNS name
   ``<node>.<domain>``), with the fleet token (``fleetTokenFile``, role ``node`` on the
   other side) and the header ``X-Kukeon-Forwarded-By: <this node>``;
4. streams the answer back as it arrives (``follow=true`` logs stay a live stream), or
   relays the WebSocket (exec, attach) frame by frame in both directions.

A request that already carries ``X-Kukeon-Forwarded-By`` is never forwarded again: if the
receiving node does not run the cell either (it moved meanwhile), the answer is ``508``.
The realm image routes (``.../realms/{realm}/images``) are per node too; they are forwarded
when the query names another node (``?node=n2``). A cell's ``stats`` (``kukectl top``) go to
the cell's node like its logs, and a node's (``.../nodes/{node}/stats``) to that node.

Failures are Status objects naming the cell and the node: the cell has no node yet
(``409``), the node is unknown, not Ready or has no API endpoint, this node has no fleet
token, the node cannot be reached or its certificate is not valid (``503``), the node
refused the fleet token (``502``). When the other node refuses a WebSocket upgrade with a
Status (the container is not running, ...), that Status comes back with its code, its
message saying which node answered and which forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMsgType, web

from kukeon.api import Cell, Kind, Node, NodeState
from kukeon.api.meta import quote
from kukeon.apiserver.app import Handler
from kukeon.apiserver.auth import Verb, denial, token_in_text
from kukeon.apiserver.expect import body_chunks
from kukeon.apiserver.handlers import principal_of, route_patterns
from kukeon.apiserver.queryparams import node_name
from kukeon.apiserver.status import REASONS, ApiError, Cause
from kukeon.cancelling import cancel_and_wait
from kukeon.client.paths import LOG_STREAM_HEADER
from kukeon.fileio import warn_if_open_to_others
from kukeon.store import NotFound, Registry
from kukeon.store.keys import is_key_part

from .lookups import CELL_SUBRESOURCES, authorize_cell_route
from .statsroutes import SUBRESOURCE as STATS
from .statsroutes import authorize_node_stats

if TYPE_CHECKING:
    from aiohttp.connector import Connection

log = logging.getLogger(__name__)

FORWARDED_BY_HEADER = "X-Kukeon-Forwarded-By"
"""Set on a forwarded request to the name of the node that forwarded it."""
FORWARDED_USER_HEADER = "X-Kukeon-Forwarded-User"
"""The original caller's user name, for the receiving node's logs (never trusted)."""

IMAGE_VERBS: Mapping[str, Verb] = {"GET": "list", "POST": "create", "DELETE": "delete"}
"""The verb each method of the realm image routes needs (as ``imageroutes`` checks: a
read for viewers, any write for editors of the realm)."""
IMAGE_SUBPATHS = ("", "/pull", "/prune", "/{image}")
"""The realm image routes (``imageroutes``), after ``.../realms/{realm}/images``."""

CONNECT_TIMEOUT = 5.0
MAX_MESSAGE_BYTES = 1 << 20
_COPIED_HEADERS = ("Content-Type", "Accept")
RELAYED_HEADERS = ("Content-Type", LOG_STREAM_HEADER)
"""The answer's headers a forwarded request passes back (a log's stream is one)."""
_REASONS = {502: "BadGateway", 508: "LoopDetected"}
MAX_REFUSAL_BYTES = 64 << 10
"""How much of the body of a refused WebSocket upgrade is kept (a Status is far smaller)."""
REFUSAL_READ_TIMEOUT = 5.0


class ForwardingError(Exception):
    """The forwarding settings cannot be used (unreadable token or CA file)."""


def read_token(path: Path) -> str:
    """The first non-empty line of ``path`` (blocking: call via asyncio.to_thread); a file
    other local users may read or replace is warned about (``fileio.warn_if_open_to_others``)."""
    warn_if_open_to_others(
        path,
        "fleet token file",
        if_replaced="kukeond sends what they put there (or link there) to every other node",
    )
    try:
        text = path.read_text()
    except OSError as error:
        raise ForwardingError(f"cannot read the fleet token file {path}: {error}") from error
    token = token_in_text(text)
    if token is None:
        raise ForwardingError(f"the fleet token file {path} is empty")
    return token


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as error:
        raise ForwardingError(f"cannot load the fleet CA file {ca_file}: {error}") from error


def server_hostname(node: str, domain: str | None) -> str | None:
    """The DNS name another node's API certificate is checked for: ``<node>.<domain>``.

    None without a domain: the certificate is then checked for the endpoint's own host
    (the node's InternalIP). A node's name is a DNS label, so one certificate for
    ``*.<domain>`` covers every node, and a certificate for ``<node>.<domain>`` one node.
    """
    return f"{node}.{domain}" if domain else None


class _Refusal:
    """The body of a refused WebSocket upgrade, for the forwarding that asked for it."""

    __slots__ = ("body",)

    def __init__(self) -> None:
        self.body = b""


_REFUSAL: contextvars.ContextVar[_Refusal | None] = contextvars.ContextVar(
    "kukeon_forwarded_upgrade_refusal", default=None
)


@functools.cache
def _keeps_refusals() -> type[aiohttp.ClientResponse]:
    """The response class of the forwarding session, made with it: subclassing aiohttp's
    ``ClientResponse`` imports aiohttp's client, which kukeond loads only once it forwards
    (``kukeon.daemon.leanaiohttp``)."""

    class KeepsRefusals(aiohttp.ClientResponse):
        """A client response that keeps the body of a refused WebSocket upgrade.

        aiohttp's ``ws_connect`` raises ``WSServerHandshakeError`` with the status and
        headers only and closes the response, so the Status the other node explained itself
        with would be lost. While a forwarding waits for an upgrade (``_REFUSAL`` is set), an
        error answer is read here, before ``ws_connect`` sees it, into that forwarding's
        ``_Refusal``.
        """

        async def start(self, connection: Connection) -> aiohttp.ClientResponse:
            response = await super().start(connection)
            refusal = _REFUSAL.get()
            if refusal is not None and self.status >= 400:
                body = bytearray()
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with asyncio.timeout(REFUSAL_READ_TIMEOUT):
                        while len(body) < MAX_REFUSAL_BYTES:
                            chunk = await self.content.read(MAX_REFUSAL_BYTES - len(body))
                            if not chunk:
                                break
                            body += chunk
                refusal.body = bytes(body)
            return response

    return KeepsRefusals


class Forwarder:
    """The forwarding middleware of one kukeond's API, and its HTTPS client session."""

    def __init__(
        self,
        *,
        registry: Registry,
        node_name: str,
        token_file: Path | None,
        ca_file: Path | None,
        server_domain: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.registry = registry
        self.node_name = node_name
        self.token_file = token_file
        self.ca_file = ca_file
        self.server_domain = server_domain
        self.connect_timeout = connect_timeout
        self._token: str | None = None
        self._tls: ssl.SSLContext | None = None
        self._tls_made = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        _, cell_path = route_patterns(Kind.CELL)
        _, realm_path = route_patterns(Kind.REALM)
        self._cell_routes = {f"{cell_path}/{sub}": sub for sub in CELL_SUBRESOURCES}
        _, node_path = route_patterns(Kind.NODE)
        self._node_stats_route = f"{node_path}/{STATS}"
        self._image_routes = frozenset(f"{realm_path}/images{sub}" for sub in IMAGE_SUBPATHS)

    async def start(self) -> None:
        """Read the token and the fleet CA file now, so a wrong path stops kukeond at start.

        Without a CA file the forwarding trusts the system's CAs: that context is made at
        the first forwarding (:meth:`_forwarding_tls`), not here. Loading the system's CA
        store costs ~2 MiB of RSS (its certificates, OpenSSL's pages: issue 18,
        docs/benchmarks/memory-idle.md), and a kukeond without a fleet token (a single node)
        never forwards."""
        if self.token_file is not None:
            self._token = await asyncio.to_thread(read_token, self.token_file)
        if self.ca_file is not None:
            self._tls = await asyncio.to_thread(_tls_context, self.ca_file)

    async def _forwarding_tls(self, what: str, node: str) -> ssl.SSLContext:
        """The forwarding's TLS context: the fleet CA's (made by :meth:`start`), or the
        system CAs', made once at the first forwarding, in a worker thread."""
        async with self._tls_made:
            if self._tls is None:
                try:
                    self._tls = await asyncio.to_thread(_tls_context, self.ca_file)
                except ForwardingError as error:
                    raise self._refuse(what, node, str(error)) from error
            return self._tls

    def _client(self) -> aiohttp.ClientSession:
        """The HTTPS session to the other nodes, made at the first forwarding (it imports
        aiohttp's client, which a kukeond that never forwards does not load)."""
        assert self._tls is not None  # made before (_forwarding_tls), which the forwarding awaits
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._tls),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                response_class=_keeps_refusals(),
            )
        return self._session

    async def get_from_node(self, node: str, endpoint: str, path: str) -> tuple[int, bytes]:
        """GET ``path`` of node ``node``'s API at ``endpoint`` as a forwarding goes (the
        fleet CA, the fleet token, ``X-Kukeon-Forwarded-By``): its status and the first
        ``MAX_REFUSAL_BYTES`` of its body. The caller bounds the time.
        ``ForwardingError`` without a fleet token or a usable CA file;
        ``aiohttp.ClientError`` when the node cannot be reached."""
        if self._token is None:
            raise ForwardingError(f"this node ({self.node_name}) has no fleet token")
        try:
            await self._forwarding_tls(f"node {node}", node)
        except ApiError as error:
            raise ForwardingError(error.message) from error
        headers = {"Authorization": f"Bearer {self._token}", FORWARDED_BY_HEADER: self.node_name}
        async with self._client().get(
            endpoint.rstrip("/") + path,
            headers=headers,
            allow_redirects=False,
            server_hostname=server_hostname(node, self.server_domain),
        ) as answer:
            return answer.status, await answer.content.read(MAX_REFUSAL_BYTES)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def install(self, app: web.Application, *, serves_cells: bool) -> None:
        """Put the middleware on ``app`` (before it starts).

        ``serves_cells`` False (``--api-only``): this API has no node routes of its own, so
        it gets routes that answer for the cells no node could be found for.
        """
        app.middlewares.append(self.middleware)
        if not serves_cells:
            app.router.add_get(self._node_stats_route, self._not_a_node)
            for pattern in self._cell_routes:
                app.router.add_route("*", pattern, self._no_local_node)
            for pattern in sorted(self._image_routes, key=lambda p: p.endswith("}")):
                route = pattern.replace("{image}", "{image:.+}")
                app.router.add_route("*", route, self._no_local_node)

    @staticmethod
    async def _not_a_node(request: web.Request) -> web.StreamResponse:
        raise ApiError(
            404,
            "this kukeond serves the API only and runs no cells: it is not node "
            f"{request.match_info['node']}",
        )

    @staticmethod
    async def _no_local_node(request: web.Request) -> web.StreamResponse:
        images = "cell" not in request.match_info  # the realm image routes
        raise ApiError(
            400 if images else 503,
            "this kukeond serves the API only and runs no cells; "
            + (
                "name the node whose images you mean with ?node=NAME"
                if images
                else "the cell's node could not be found"
            ),
        )

    # --- the middleware ------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = getattr(request.match_info, "route", None)
        resource = getattr(route, "resource", None)
        pattern = getattr(resource, "canonical", None)
        if pattern in self._cell_routes:
            return await self._cell_request(request, handler, self._cell_routes[pattern])
        if pattern == self._node_stats_route:
            return await self._node_stats_request(request, handler)
        if pattern in self._image_routes:
            return await self._image_request(request, handler)
        return await handler(request)

    async def _cell_request(
        self, request: web.Request, handler: Handler, subresource: str
    ) -> web.StreamResponse:
        m = request.match_info
        key = (m["realm"], m["space"], m["stack"], m["cell"])
        authorize_cell_route(request, subresource)  # before the read: it tells what exists
        try:
            found = await self.registry.get(Kind.CELL, key)
        except NotFound:
            return await handler(request)  # the node-local handler answers 404
        assert isinstance(found, Cell)
        node = found.spec.node_name
        if node == self.node_name:
            return await handler(request)
        name = "/".join(key)
        if not node:
            status = found.status
            why_pending = f": {status.message}" if status.message else ""
            raise ApiError(
                409,
                f"cell {name} is not placed on a node yet (state {status.state}"
                f"{why_pending}); it has no {subresource} to serve",
                name=name,
                kind="Cell",
                causes=[Cause("spec.nodeName", "not set")],
            )
        return await self._forward(request, node, f"cell {name}", subresource)

    async def _image_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        node = node_name(request)
        if node is None or node == self.node_name:
            return await handler(request)
        realm = request.match_info["realm"]
        verb = IMAGE_VERBS.get(request.method)
        if verb is None:
            return await handler(request)  # 405 from the router's own answer
        why = denial(principal_of(request), verb=verb, realm=realm, subresource="images")
        if why is not None:
            raise ApiError(403, f"Forbidden: {why}")
        return await self._forward(
            request, node, f"the images of realm {realm}", "images", named_in="node"
        )

    async def _node_stats_request(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        node = request.match_info["node"]
        if node == self.node_name:
            return await handler(request)
        authorize_node_stats(request)
        return await self._forward(
            request, node, f"the figures of node {node}", STATS, named_in="node"
        )

    # --- forwarding ----------------------------------------------------------------------

    def _refuse(self, what: str, node: str, problem: str, *, code: int = 503) -> ApiError:
        return ApiError(
            code,
            f"{what} is on node {node}, but {problem}",
            reason=_REASONS.get(code),
            name=node,
            kind="Node",
            causes=[Cause("spec.nodeName", node)],
        )

    async def _endpoint(self, what: str, node: str, *, named_in: str | None = None) -> str:
        """The API endpoint of ``node``; ``named_in``: the parameter the client named it
        with (a node no one registered is then the client's 404, not a 503 of ours)."""
        if named_in is not None and not is_key_part(node):
            raise ApiError(
                400,
                f"query parameter {named_in}: {quote(node)} is not a node name: a name has "
                "no '/' and is not '.' or '..'",
                causes=[Cause(named_in, "not a valid node name")],
            )
        try:
            found = await self.registry.get(Kind.NODE, (node,))
        except NotFound:
            if named_in is not None:
                raise ApiError(
                    404,
                    f"Node {node!r} not found: no node of that name is registered",
                    name=node,
                    kind="Node",
                    causes=[Cause(named_in, "no node of that name is registered")],
                ) from None
            raise self._refuse(what, node, "no node of that name is registered") from None
        assert isinstance(found, Node)
        status = found.status
        if status.state != NodeState.READY:
            reason = f" ({status.reason})" if status.reason else ""
            raise self._refuse(what, node, f"that node is {status.state}{reason}")
        if not status.api_endpoint:
            raise self._refuse(
                what,
                node,
                "that node publishes no API endpoint (status.apiEndpoint: its kukeond "
                "serves no TCP listener, apiAddress)",
            )
        return status.api_endpoint.rstrip("/")

    async def _forward(
        self,
        request: web.Request,
        node: str,
        what: str,
        subresource: str,
        *,
        named_in: str | None = None,
    ) -> web.StreamResponse:
        if request.headers.get(FORWARDED_BY_HEADER):
            raise self._refuse(
                what,
                node,
                f"this request was already forwarded by node "
                f"{request.headers[FORWARDED_BY_HEADER]} to {self.node_name}; "
                "a request is forwarded at most once (the cell may just have moved: retry)",
                code=508,
            )
        endpoint = await self._endpoint(what, node, named_in=named_in)
        if self._token is None:
            raise self._refuse(
                what,
                node,
                f"this node ({self.node_name}) has no fleet token to forward with "
                "(fleetTokenFile); ask that node's API instead",
            )
        await self._forwarding_tls(what, node)
        url = endpoint + str(request.rel_url)
        headers = {
            "Authorization": f"Bearer {self._token}",
            FORWARDED_BY_HEADER: self.node_name,
            FORWARDED_USER_HEADER: principal_of(request).user,
        }
        for name in _COPIED_HEADERS:
            if name in request.headers:
                headers[name] = request.headers[name]
        log.debug("forwarding %s %s to node %s", request.method, request.rel_url, node)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._relay_websocket(request, url, headers, node, what, subresource)
        return await self._relay_http(request, url, headers, node, what)

    async def _relay_http(
        self, request: web.Request, url: str, headers: dict[str, str], node: str, what: str
    ) -> web.StreamResponse:
        body: AsyncIterator[bytes] | None = (
            body_chunks(request, 1 << 16) if request.body_exists else None
        )
        try:
            async with self._client().request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                server_hostname=server_hostname(node, self.server_domain),
            ) as upstream:
                if upstream.status in (401, 403):
                    raw = await upstream.read()
                    refused = _status_of(raw)
                    text = refused["message"] if refused else raw.decode(errors="replace").strip()
                    raise self._refuse(
                        what,
                        node,
                        f"node {node} refused this node's fleet token (HTTP {upstream.status}): "
                        f"{text[:300]}; its tokens file must map the fleet token to role node",
                        code=502,
                    )
                response = web.StreamResponse(status=upstream.status)
                for name in RELAYED_HEADERS:
                    if name in upstream.headers:
                        response.headers[name] = upstream.headers[name]
                await response.prepare(request)
                try:
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                except (aiohttp.ClientError, TimeoutError) as error:
                    # Mid-stream the status is sent already: end the stream, say why here.
                    log.warning("stream from node %s broke: %r", node, error)
                await response.write_eof()
                return response
        except aiohttp.ClientConnectorCertificateError as error:
            raise self._untrusted(what, node, url, error) from error
        except aiohttp.ClientConnectionError as error:
            raise self._refuse(what, node, f"{url} cannot be reached: {error}") from error

    def _untrusted(
        self, what: str, node: str, url: str, error: aiohttp.ClientConnectorCertificateError
    ) -> ApiError:
        name = server_hostname(node, self.server_domain)
        expected = f"the name {name}" if name else "its address (or set fleetTlsServerDomain)"
        return self._refuse(
            what,
            node,
            f"the certificate of {url} is not one this node trusts: it must be signed by "
            f"the fleet CA ({self.ca_file or 'the system CAs'}) and valid for {expected}: "
            f"{error.certificate_error}",
        )

    async def _relay_websocket(
        self,
        request: web.Request,
        url: str,
        headers: dict[str, str],
        node: str,
        what: str,
        subresource: str,
    ) -> web.StreamResponse:
        refusal = _Refusal()
        waiting = _REFUSAL.set(refusal)
        try:
            upstream = await self._client().ws_connect(
                url,
                headers=headers,
                max_msg_size=MAX_MESSAGE_BYTES,
                autoping=True,
                server_hostname=server_hostname(node, self.server_domain),
            )
        except aiohttp.WSServerHandshakeError as error:
            return self._upgrade_refused(error.status, refusal.body, node, what, subresource)
        except aiohttp.ClientConnectorCertificateError as error:
            raise self._untrusted(what, node, url, error) from error
        except aiohttp.ClientError as error:
            raise self._refuse(what, node, f"{url} cannot be reached: {error}") from error
        finally:
            _REFUSAL.reset(waiting)
        socket = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        try:
            await socket.prepare(request)
            await _relay(socket, upstream)
        finally:
            await upstream.close()
            await socket.close()
        return socket

    def _upgrade_refused(
        self, code: int, body: bytes, node: str, what: str, subresource: str
    ) -> web.Response:
        """The answer to a WebSocket upgrade the other node refused with HTTP ``code``.

        Its own Status comes back as it was sent (code, reason, details), the message saying
        which node answered and which forwarded; a refused fleet token is a ``502`` here.
        """
        status = _status_of(body)
        text = status["message"] if status else body.decode(errors="replace").strip()[:300]
        if code in (401, 403):
            problem = (
                f"node {node} refused this node's fleet token (HTTP {code})"
                + (f": {text}" if text else "")
                + "; its tokens file must map the fleet token to role node"
            )
            raise self._refuse(what, node, problem, code=502)
        through = (
            f"(answered by node {node} for the {subresource} of {what}, "
            f"forwarded by node {self.node_name})"
        )
        if status is not None and code >= 400:
            return web.json_response(
                {**status, "code": code, "message": f"{status['message']} {through}"},
                status=code,
            )
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        answer = f"HTTP {code} {phrase}".strip() + (f": {text}" if text else "")
        final = code if code >= 400 else 502
        raise ApiError(
            final,
            f"node {node} answered the {subresource} of {what} with {answer} "
            f"(forwarded by node {self.node_name})",
            reason=_REASONS.get(final, REASONS.get(final)),
            name=node,
            kind="Node",
        )


def _status_of(body: bytes) -> dict[str, Any] | None:
    """``body`` as a Status document with a message, or None."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's stack
        return None
    if (
        isinstance(document, dict)
        and document.get("kind") == "Status"
        and isinstance(document.get("message"), str)
    ):
        return document
    return None


async def _relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Copy frames both ways until either side closes; then close the other."""

    async def to_upstream() -> None:
        async for message in client:
            if message.type == WSMsgType.BINARY:
                await upstream.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await upstream.send_str(message.data)

    async def to_client() -> None:
        async for message in upstream:
            if message.type == WSMsgType.BINARY:
                await client.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await client.send_str(message.data)

    tasks = [asyncio.ensure_future(to_upstream()), asyncio.ensure_future(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(*tasks)
