"""``/metrics`` over aiohttp: on its own listener, or as one route of the API server.

Rendering a registry runs every collector: the hierarchy collector walks the document
cache and the process collector reads ``/proc``. That is CPU and file I/O, so it runs in
a worker thread, never on the event loop. The answer is always the classic text format
(``exposition.render_text``), which every Prometheus accepts.

Its own listener keeps ``Expect`` aside as the API's does (``kukeon.httpexpect``): no
``100 Continue`` for a body no route reads, a 417 Status for any other expectation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from kukeon.httpexpect import ExpectAppRunner, expectations

from .exposition import CONTENT_TYPE, render_text

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """An aiohttp handler serving ``registry``; add it to any app (``GET /metrics``)."""

    async def serve(_: web.Request) -> web.StreamResponse:
        body = await asyncio.to_thread(render_text, registry)
        # aiohttp's content_type setter refuses parameters; the header takes the full value.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    return serve


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """An app with ``GET /metrics`` (and ``/`` pointing there)."""
    app = web.Application(middlewares=[expectations])
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
    address: str = DEFAULT_METRICS_ADDRESS, *, registry: CollectorRegistry
) -> MetricsServer:
    """Listen on ``address`` (port 0 picks a free one; see ``MetricsServer.port``)."""
    host, port = parse_address(address)
    runner = ExpectAppRunner(metrics_app(registry), access_log=None)
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
