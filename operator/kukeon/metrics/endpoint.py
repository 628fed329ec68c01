"""``/metrics`` over aiohttp: on its own listener, or as one route of the API server.

Rendering a registry runs every collector: the hierarchy collector walks the document
cache and the process collector reads ``/proc``. That is CPU and file I/O, so it runs in
a worker thread, never on the event loop. The answer is always the classic text format
(``exposition.render_text``), which every Prometheus accepts.

Its own listener keeps ``Expect`` aside as the API's does (``kukeon.httpexpect``): no
``100 Continue`` for a body no route reads, a 417 Status for any other expectation.

Its own listener answers no client whose address is in ``refused`` (kukeond passes its
``subnetPool``, where every cell's address comes from) with anything but a 403: the series
name every realm's objects (the API's ``/metrics`` route refuses editors for that reason),
and a cell reaches the node's own addresses (its gateway, the node's IP) whatever its
space's egress policy, which its realm's editor writes. With ``metricsAddress`` on an
address other than loopback (the chart's node IP), any realm's editor read the names and
states of every other realm's cells, sets and images from a cell of theirs.

``guard`` is one more middleware, inside that refusal: kukeond's bearer token check
(``metrics_token_file``'s token or the one it generates; none with ``metrics_open``;
``kukeon.daemon.metricstoken``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import IPv4Network, IPv6Network

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from kukeon.httpexpect import ExpectAppRunner, expectations

from .exposition import CONTENT_TYPE, render_text

log = logging.getLogger(__name__)

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Network = IPv4Network | IPv6Network


def peer_in(request: web.Request, networks: Sequence[Network]) -> str | None:
    """The client's address when it lies in one of ``networks`` (an IPv4 client of a
    dual-stack listener, ``::ffff:a.b.c.d``, as IPv4), else None."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not networks or not peer:
        return None
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None  # not an IP socket
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in networks:
        if address.version == network.version and address in network:
            return str(address)
    return None


def _refusing(networks: Sequence[Network]) -> Middleware:
    """A middleware answering 403 to a client in ``networks`` (a cell of this node)."""
    shown = ", ".join(str(network) for network in networks)

    @web.middleware
    async def refuse(request: web.Request, handler: Handler) -> web.StreamResponse:
        address = peer_in(request, networks)
        if address is None:
            return await handler(request)
        # debug: a cell asking in a loop must not fill kukeond's log
        log.debug("refused /metrics to %s: an address of the node's cells (%s)", address, shown)
        return web.Response(
            status=403,
            text=(
                f"kukeon: /metrics is not served to {address}, an address of this node's cells "
                f"({shown}): its series name every realm's objects. Scrape from the host, or "
                "ask the API's /metrics with an admin's or viewer's token.\n"
            ),
        )

    return refuse


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """An aiohttp handler serving ``registry``; add it to any app (``GET /metrics``)."""

    async def serve(_: web.Request) -> web.StreamResponse:
        body = await asyncio.to_thread(render_text, registry)
        # aiohttp's content_type setter refuses parameters; the header takes the full value.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return serve


def metrics_app(
    registry: CollectorRegistry,
    *,
    refused: Sequence[Network] = (),
    guard: Middleware | None = None,
) -> web.Application:
    """An app with ``GET /metrics`` (and ``/`` pointing there); a client whose address is in
    ``refused`` gets a 403 for every path, then ``guard`` (if any) sees every request."""
    middlewares: list[Middleware] = [expectations]
    if guard is not None:  # before Expect is answered: no 100 Continue for a refused one
        middlewares.insert(0, guard)
    if refused:  # outermost: a refused client reaches nothing else
        middlewares.insert(0, _refusing(tuple(refused)))
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/metrics", metrics_handler(registry))

    async def index(_: web.Request) -> web.StreamResponse:
        return web.Response(text="kukeon: metrics at /metrics\n")

    app.router.add_get("/", index)
    return app


def parse_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) → (host, port)."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit():
        raise ValueError(f"metrics address {address!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics address {address!r}: port {port} is out of range")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", port


class MetricsServer:
    """A running ``/metrics`` listener; ``await stop()`` closes it."""

    def __init__(self, runner: web.AppRunner, site: web.TCPSite, host: str, port: int) -> None:
        self._runner = runner
        self._site = site
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    async def stop(self) -> None:
        await self._runner.cleanup()


async def serve_metrics(
    address: str = DEFAULT_METRICS_ADDRESS,
    *,
    registry: CollectorRegistry,
    refused: Sequence[Network] = (),
    guard: Middleware | None = None,
) -> MetricsServer:
    """Listen on ``address`` (port 0 picks a free one; see ``MetricsServer.port``); clients
    in ``refused`` get a 403, every request passes ``guard`` (``metrics_app``)."""
    host, port = parse_address(address)
    app = metrics_app(registry, refused=refused, guard=guard)
    runner = ExpectAppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise OSError(
            error.errno, f"cannot listen for /metrics on {address}: {error.strerror}"
        ) from error
    bound_port = port
    for sockname in runner.addresses:  # the real port when 0 asked for any free one
        bound_port = int(sockname[1])
        break
    return MetricsServer(runner, site, host, bound_port)
