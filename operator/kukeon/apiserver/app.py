"""The aiohttp application: middlewares, health/version/metrics routes and the resource routes.

Middlewares run outermost first:

1. ``_errors``: every failure becomes a Status object (a 413 closes the connection, as
   the body was not read: the handlers refuse a Content-Length over the limit before
   reading). ``ApiError`` is rendered as is,
   aiohttp's own HTTP errors (404 for an unknown path, 405, 413 for a body over the limit)
   are wrapped, anything else is logged with its traceback and answered with a 500 Status
   that says nothing about the server's internals. (Requests aiohttp's parser refuses
   never reach a middleware: ``kukeon.apiserver.lowlevel`` renders those.)
   Then ``contentcoding``: a body coded other than gzip or deflate is a 415, its
   connection closed, before anything decodes more of it.
2. ``_authenticate``: requests on the unix socket are the local admin; on TCP they need a
   bearer token from the tokens file (401 otherwise). Authorization of the verb and realm
   happens in the handlers, which know both, before any body is read.
   (Before it, ``expect.expectations``: a 417 for an ``Expect`` other than 100-continue;
   the ``100 Continue`` itself is sent when a handler reads the body.)
3. ``_deadline``: a non-streaming request that takes longer than the configured timeout
   is answered 504 (watches stream for as long as the client wants).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import platform
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CollectorRegistry, Counter, Histogram

import kukeon
from kukeon.api import API_VERSION, GROUP, VERSION
from kukeon.api.meta import quote
from kukeon.apiserver.auth import LOCAL_ADMIN, Role, TokenBook, bearer_token
from kukeon.apiserver.contentcoding import content_coding_middleware
from kukeon.apiserver.expect import expectations
from kukeon.apiserver.handlers import PRINCIPAL_KEY, ResourceHandlers, is_watch, principal_of
from kukeon.apiserver.inflight import InflightLimits, realm_flow
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.requestoptions import request_options_middleware
from kukeon.apiserver.settings import ApiSettings
from kukeon.apiserver.status import ApiError, Cause, host_disk_refused, status_response
from kukeon.apiserver.watchcache import StateSource, WatchCache
from kukeon.apiserver.watchhub import WatchHub
from kukeon.apiserver.watchstream import CLOSING_KEY, client_gone
from kukeon.apiserver.writerules import ContainerCheck
from kukeon.client.paths import API_ROOT, KINDS
from kukeon.store.keys import is_key_part

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool] | bool]
"""A named part of the daemon that must be running for /readyz to say ok."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_UNGUARDED = frozenset({"/healthz", "/readyz", "/livez", "/version"})


class _RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "kukeon_apiserver_requests_total",
            "API requests by method and HTTP code.",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "kukeon_apiserver_request_duration_seconds",
            "Time to answer a non-streaming API request.",
            ["method"],
            registry=registry,
        )
        self.write_budget_refusals = Counter(
            "kukeon_apiserver_write_budget_refusals_total",
            "Writes answered 429 because their realm had written all its write budget allows "
            "(realmWriteBytesPerSecond), by realm.",
            ["realm"],
            registry=registry,
        )

    def write_refused(self, realm: str) -> None:
        self.write_budget_refusals.labels(realm).inc()


# One set of collectors per CollectorRegistry: a second app on the same registry (tests,
# a restart of the API inside one process) reuses them instead of failing to register.
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, _RequestMetrics] = (
    weakref.WeakKeyDictionary()
)


def _metrics_for(registry: CollectorRegistry) -> _RequestMetrics:
    metrics = _METRICS.get(registry)
    if metrics is None:
        metrics = _METRICS[registry] = _RequestMetrics(registry)
    return metrics


_LONG_RUNNING_ATTR = "kukeon_long_running"

H = TypeVar("H", bound=Callable[..., Any])


def long_running(handler: H) -> H:
    """Mark a route handler as streaming: the per-request timeout does not apply to it.

    Watches, ``follow=true`` streams and WebSocket upgrades are recognised without it; use
    it for anything else that legitimately outlives the timeout (e.g. an image upload).
    """
    setattr(handler, _LONG_RUNNING_ATTR, True)
    return handler


_PUBLIC_ATTR = "kukeon_public"


def public(handler: H) -> H:
    """Mark a route handler as answering without a bearer token on TCP.

    For what holds nothing secret and must load before a token can be sent (the web
    console's page and its static files, ``kukeon.ui``); the API behind them still asks.
    """
    setattr(handler, _PUBLIC_ATTR, True)
    return handler


async def _not_for_caches(_: web.Request, response: web.StreamResponse) -> None:
    """No cache keeps an answer: it holds what the caller's token may read (kube-apiserver
    says as much). What may be kept says so itself (the console's static files)."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


def _is_public(request: web.Request) -> bool:
    if request.path in _UNGUARDED:
        return True
    handler = getattr(request.match_info, "handler", None)
    return bool(getattr(handler, _PUBLIC_ATTR, False))


def is_long_running(request: web.Request) -> bool:
    if is_watch(request) or request.query.get("follow", "").lower() in {"1", "true", "yes"}:
        return True
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return True
    handler = getattr(request.match_info, "handler", None)
    return bool(getattr(handler, _LONG_RUNNING_ATTR, False))


def _on_unix_socket(request: web.Request) -> bool:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def create_app(
    *,
    registry: RegistryApi,
    settings: ApiSettings,
    tokens: TokenBook | None = None,
    metrics_registry: CollectorRegistry | None = None,
    readiness_checks: dict[str, ReadinessCheck] | None = None,
    container_check: ContainerCheck | None = None,
) -> web.Application:
    """The API as an aiohttp application, ready to be served by ``ApiServerRunner``.

    ``tokens`` authenticates TCP requests; without it every TCP request is refused (401).
    ``readiness_checks`` are consulted by /readyz beside etcd (e.g. "controllers").
    ``container_check`` refuses containers no node could run (``writerules.check_runnable``).
    """
    closing = asyncio.Event()
    metrics = _metrics_for(metrics_registry) if metrics_registry is not None else None
    app = web.Application(
        middlewares=[
            _errors_middleware(settings, metrics),
            content_coding_middleware,
            expectations,
            _authentication_middleware(tokens),
            _inflight_middleware(settings),
            _path_names_middleware,
            request_options_middleware,
            _deadline_middleware(settings),
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[CLOSING_KEY] = closing
    app.on_response_prepare.append(_not_for_caches)

    async def on_shutdown(_: web.Application) -> None:
        closing.set()  # open watches end their streams

    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/livez", _healthz)
    app.router.add_get("/readyz", _readyz_handler(registry, settings, dict(readiness_checks or {})))
    app.router.add_get("/version", _version)
    app.router.add_get("/metrics", _metrics_handler(metrics_registry))
    app.router.add_get("/apis", _groups)
    app.router.add_get(API_ROOT, _discovery)
    hub = WatchHub(registry=registry)
    cache = _watch_cache(registry, settings)
    handlers = ResourceHandlers(
        registry=registry,
        settings=settings,
        closing=closing,
        hub=hub,
        cache=cache,
        container_check=container_check,
        write_refused=metrics.write_refused if metrics is not None else None,
    )
    if cache is not None:
        app[WATCH_CACHE_KEY] = cache

    async def on_startup(_: web.Application) -> None:
        if cache is not None:
            await cache.start()  # lists in the background; reads go to etcd until then

    async def on_cleanup(_: web.Application) -> None:
        if cache is not None:
            await cache.stop()
        await hub.close()
        await handlers.close()

    app.on_startup.append(on_startup)

    app.on_cleanup.append(on_cleanup)
    handlers.add_routes(app)
    return app


WATCH_CACHE_KEY = web.AppKey("watch_cache", WatchCache)
"""The app's watch cache, when it has one: others in the process may read it (metrics)."""


def _watch_cache(registry: RegistryApi, settings: ApiSettings) -> WatchCache | None:
    """The watch cache, unless disabled or the registry cannot tell a kind's state (a fake)."""
    if not settings.watch_cache or not isinstance(registry, StateSource):
        return None
    return WatchCache(registry=registry, cache_wait=settings.cache_wait)


# --- middlewares ---------------------------------------------------------------------------


def _errors_middleware(settings: ApiSettings, metrics: _RequestMetrics | None) -> Middleware:
    """Every failure as a Status object; requests counted and timed."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except ApiError as exc:
            code = exc.code
            refused = status_response(exc)
            if exc.code in (408, 413):
                refused.force_close()  # the announced body is never read (or never came)
            return refused
        except web.HTTPException as exc:
            code = exc.status
            if exc.status < 400:
                raise
            response = status_response(_from_http_exception(exc, request, settings.max_body_bytes))
            if exc.status == 413:
                response.force_close()  # the rest of the body is never read
            return response
        except RequestPayloadError as exc:
            # The body could not be read as sent: a Content-Encoding that does not decode,
            # a chunked framing that breaks. The client's error, not a 500 and a traceback.
            code = 400
            log.debug("unreadable body of %s %s: %s", request.method, request.path, exc)
            reason = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else ""
            # Nothing more of it is read: aiohttp would otherwise read on after the answer
            # (its lingering close), meet the same error and log it as unhandled.
            request.content.feed_eof()
            response = status_response(
                ApiError(400, f"the request body cannot be read: {reason or 'malformed'}")
            )
            response.force_close()
            return response
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if (disk := host_disk_refused(exc)) is not None:
                code = disk.code
                log.warning("%s %s: %s", request.method, request.path, disk.message)
                return status_response(disk)
            if _client_left(request, exc):
                code = 400  # its request never came whole; the answer goes nowhere
                log.debug("%s %s: the client left mid-request", request.method, request.path)
                return status_response(ApiError(400, "the client closed the connection"))
            log.exception("unhandled error answering %s %s", request.method, request.path)
            return status_response(
                ApiError(500, "internal error answering the request; see the kukeond log")
            )
        finally:
            if metrics is not None:
                metrics.requests.labels(request.method, str(code)).inc()
                if not is_long_running(request):
                    metrics.latency.labels(request.method).observe(time.perf_counter() - started)

    return errors


def _client_left(request: web.Request, exc: Exception) -> bool:
    """Whether ``exc`` is the client's hang-up: aiohttp fails a read of the body with
    ``ConnectionResetError`` once the connection is lost (a body shorter than its
    Content-Length, a chunked body that stops), and the request then has no transport.

    A write fails alike ("Cannot write to closing transport") while the transport is
    closing and still set: the client's end of stream closes it, and its connection_lost
    (which unsets it) runs one loop iteration later. A handler resumed in between (its
    thread's answer came in the same iteration as the hang-up, as on a busy loop) meets
    that state: a log stream's headers written after its client left."""
    return isinstance(exc, ConnectionResetError) and client_gone(request)


def _authentication_middleware(tokens: TokenBook | None) -> Middleware:
    """The local admin on the unix socket; a bearer token of ``tokens`` on TCP."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _on_unix_socket(request):
            request[PRINCIPAL_KEY] = LOCAL_ADMIN
            return await handler(request)
        if _is_public(request):
            return await handler(request)
        token = bearer_token(request.headers.get("Authorization"))
        principal = tokens.authenticate(token) if tokens is not None and token else None
        if principal is None:
            why = "a bearer token is required" if token is None else "the bearer token is not valid"
            raise ApiError(401, f"Unauthorized: {why}")
        request[PRINCIPAL_KEY] = principal
        return await handler(request)

    return authenticate


def _inflight_middleware(settings: ApiSettings) -> Middleware:
    """At most ``apiMaxRequestsInflight`` short requests at once, ``apiMaxLongRunningPerUser``
    watches and sessions per token holder and ``apiMaxLongRunning`` in all (``inflight``);
    429 past any."""
    limits = InflightLimits(
        max_requests=settings.max_requests_inflight,
        max_long_running_per_user=settings.max_long_running_per_user,
        max_long_running=settings.max_long_running,
    )

    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _UNGUARDED:
            return await handler(request)  # probes answer however busy the server is
        principal = request.get(PRINCIPAL_KEY)
        # Not bound per user, nor by the short bound: the local admin (root on the host
        # anyway) and other nodes forwarding their users' requests (each user bound on the
        # node they asked). As kube-apiserver exempts system:masters: token holders filling
        # the short bound (slow bodies) must not lock out the one who can mend things. Their
        # long-running requests count in the whole long-running bound (a tenth of it theirs).
        exempt = _on_unix_socket(request) or (principal is not None and principal.role == Role.NODE)
        long = is_long_running(request)
        if exempt and not long:
            return await handler(request)
        user = principal.user if principal is not None and not exempt else None
        editor = principal is not None and principal.role == Role.EDITOR and not exempt
        realms = realm_flow(principal.realms) if editor and principal is not None else None
        with limits.admitted(user=user, long_running=long, realms=realms):
            return await handler(request)

    return bounded


# Path parameters that name an object or one of its parents (an image's name is a
# reference with its own rules, ``kukeon.daemon.imageroutes``).
_NAME_PARAMS = frozenset(
    {"realm", "space", "stack", "cell", "node", "secret", "cellprofile", "cellset", "container"}
)


@web.middleware
async def _path_names_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A 400 naming the path segment for a name no key can hold (``%2F``, ``..``): the
    handlers below may then take every name in a URL for a key part."""
    for param, value in request.match_info.items():
        if param in _NAME_PARAMS and not is_key_part(value):
            raise ApiError(
                400,
                f"the URL's {param} name {quote(value)} is not valid: a name has no '/' "
                "and is not '.' or '..'",
                causes=[Cause(param, "not a valid name")],
            )
    return await handler(request)


def _deadline_middleware(settings: ApiSettings) -> Middleware:
    """A 504 for a non-streaming request that outlives ``settings.request_timeout``; a 408
    when its body had not all come by then (the client stopped sending it)."""

    @web.middleware
    async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_long_running(request):
            return await handler(request)
        try:
            async with asyncio.timeout(settings.request_timeout):
                return await handler(request)
        except TimeoutError:
            if request.body_exists and not request.content.is_eof():
                # The client's doing, not the server's: its body stopped coming.
                raise ApiError(
                    408,
                    f"the request body did not arrive whole within "
                    f"{settings.request_timeout:g}s; nothing of it was kept",
                    reason="Timeout",
                ) from None
            raise ApiError(
                504,
                f"the request did not complete within {settings.request_timeout:g}s",
            ) from None

    return deadline


# --- health, version, metrics and discovery ------------------------------------------------


async def _healthz(_: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


def _readyz_handler(
    registry: RegistryApi, settings: ApiSettings, checks: dict[str, ReadinessCheck]
) -> Handler:
    """/readyz: etcd answers and every named check is ok (503 naming the failures if not)."""

    async def readyz(request: web.Request) -> web.StreamResponse:
        results: dict[str, str] = {}
        # Inside the request's own deadline, so /readyz answers 503 naming etcd, not a 504.
        within = min(5.0, settings.request_timeout * 0.8)
        try:
            async with asyncio.timeout(within):
                await registry.current_revision()
            results["etcd"] = "ok"
        except TimeoutError:
            results["etcd"] = f"failed: no answer within {within:g}s"
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            results["etcd"] = f"failed: {type(exc).__name__}: {exc}"
        for name, check in checks.items():
            try:
                outcome = check()
                ready = await outcome if not isinstance(outcome, bool) else outcome
                results[name] = "ok" if ready else "failed: not running"
            except Exception as exc:
                results[name] = f"failed: {type(exc).__name__}: {exc}"
        ok = all(value == "ok" for value in results.values())
        lines = [f"[{'+' if v == 'ok' else '-'}]{name} {v}" for name, v in results.items()]
        body = "\n".join([*lines, "readyz check passed" if ok else "readyz check failed"]) + "\n"
        return web.Response(text=body, status=200 if ok else 503)

    return readyz


async def _version(_: web.Request) -> web.StreamResponse:
    return web.json_response(
        {
            "gitVersion": kukeon.__version__,
            "apiVersion": API_VERSION,
            "pythonVersion": platform.python_version(),
            "platform": f"{platform.system().lower()}/{platform.machine()}",
        }
    )


_METRICS_READERS: frozenset[Role] = frozenset({Role.ADMIN, Role.VIEWER})
"""Who may read /metrics: the series name every realm's objects, which only the roles that
read every realm may see (an editor sees its realms only; ``node`` reaches node routes)."""


def _metrics_handler(metrics_registry: CollectorRegistry | None) -> Handler:
    """/metrics: the Prometheus exposition of ``metrics_registry`` (404 without one), for
    admins and viewers (403 otherwise)."""

    async def metrics_endpoint(request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        if principal.role not in _METRICS_READERS:
            raise ApiError(
                403,
                f"Forbidden: user {principal.user!r} ({principal.role.value}) may not read "
                "/metrics: its series name the objects of every realm; only admin and viewer "
                "may",
            )
        if metrics_registry is None:
            raise ApiError(404, "metrics are not enabled on this server")
        payload, content_type = await asyncio.to_thread(_prometheus_text, metrics_registry)
        response = web.Response(body=payload)
        response.content_type = content_type
        return response

    return metrics_endpoint


def _prometheus_text(registry: CollectorRegistry) -> tuple[bytes, str]:
    """``registry`` in prometheus-client's text format, and its media type (in a worker
    thread). Its ``exposition`` module is imported at the first request: it brings the
    library's HTTP servers along (~0.45 MB a kukeond would hold otherwise, issue 18;
    kukeond's own metrics endpoint renders with kukeon.metrics.exposition)."""
    generate_latest, content_type = _prometheus_exposition()
    return generate_latest(registry), content_type


@functools.cache
def _prometheus_exposition() -> tuple[Callable[[CollectorRegistry], bytes], str]:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest, CONTENT_TYPE_LATEST.split(";")[0]


async def _discovery(_: web.Request) -> web.StreamResponse:
    return web.json_response(
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": API_VERSION,
            "resources": [
                {
                    "name": info.plural,
                    "singularName": info.kind.value.lower(),
                    "kind": info.kind.value,
                    "shortNames": [a for a in info.aliases if len(a) <= 3],
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }
                for info in KINDS.values()
            ],
        }
    )


async def _groups(_: web.Request) -> web.StreamResponse:
    version_entry = {"groupVersion": API_VERSION, "version": VERSION}
    return web.json_response(
        {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {"name": GROUP, "versions": [version_entry], "preferredVersion": version_entry}
            ],
        }
    )


PATH_SHOWN_MAX = 256
"""At most this many characters of a request's path are quoted back in a 404 or 405."""


def path_as_sent(request: web.Request) -> str:
    """The request's path as the client sent it (percent-encoded, without the query), cut
    to ``PATH_SHOWN_MAX``: the decoded one hides an escape (``/apis/kukeon.io%2Fv1beta1``
    would read as a valid path)."""
    raw = request.raw_path.partition("?")[0]
    if len(raw) <= PATH_SHOWN_MAX:
        return raw
    return f"{raw[:PATH_SHOWN_MAX]}... ({len(raw)} characters)"


def _from_http_exception(
    exc: web.HTTPException, request: web.Request, max_body_bytes: int
) -> ApiError:
    if exc.status == 404:
        return ApiError(404, f"no such API path: {path_as_sent(request)}")
    if exc.status == 405:
        # RFC 9110: a 405 carries Allow, the methods the path does answer.
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return ApiError(
            405, f"{request.method} is not allowed on {path_as_sent(request)}", headers=allow
        )
    if exc.status == 413:
        return ApiError(
            413,
            f"the request body is larger than the limit of {max_body_bytes} bytes",
        )
    message: Any = exc.text or exc.reason
    return ApiError(exc.status, str(message).strip())
