"""The API's listening sockets, served by an accept loop of ours instead of asyncio's.

asyncio's server (what aiohttp's ``TCPSite`` and ``SockSite`` start) accepts every
connection it can and keeps it: unauthenticated clients holding TCP connections open (or
sending a few bytes of a TLS ClientHello) took kukeond to its open-files limit, after which
each failed ``accept()`` was one traceback in the log (asyncio's exception handler) and
the unix socket, served by the same process, could not take the local admin either.
``AcceptingSite`` serves the runner's application on a bound, listening socket and:

- holds at most ``max_connections`` accepted connections open (the TCP listener's
  ``apiMaxConnections``); a connection past it is closed at once and counted;
- ends a TLS handshake not done in ``handshake_timeout`` seconds (asyncio's default is 60 s);
  a connection that has not sent its first request's headers in time is closed by
  ``lowlevel.StatusRequestHandler`` (30 s, as kube-apiserver's ReadHeaderTimeout);
- logs a failed ``accept()`` (out of open files, ``EMFILE``/``ENFILE``) or a refused
  connection at most once per ``LOG_INTERVAL`` with the count since the last line, never
  a traceback each, and waits ``ACCEPT_RETRY_SECONDS`` before accepting again after the
  former (Linux keeps reporting the socket readable);
- exposes ``kukeon_api_connections{listener}`` (open now),
  ``kukeon_api_connections_refused_total{listener}`` and
  ``kukeon_api_accept_errors_total{listener}``.

``tcp_connection_cap`` works out the cap from the open-files limit: the cap plus what
kukeond keeps for itself must fit under it, or kukeond refuses to start.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import ssl
import time
import weakref
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from kukeon.framework.aiotasks import Supervisor

log = logging.getLogger(__name__)

TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS client has to finish its handshake (asyncio's default is 60 s)."""
DEFAULT_MAX_TCP_CONNECTIONS = 4096
"""The TCP listener's cap when ``apiMaxConnections`` is not set, lowered to what the
open-files limit leaves (``tcp_connection_cap``)."""
MIN_TCP_CONNECTIONS = 64
"""The smallest cap a default is lowered to before kukeond refuses to start instead."""
OWN_DESCRIPTORS = 1024
"""Open files kukeond keeps for itself beside its API connections: etcd and containerd
channels, netlink sockets, log files, the unix socket's listener, etcd's and CNI's
children's pipes. Each running container adds a few (its log copier's pidfd and fifos):
docs/install.md says to count them."""
ACCEPT_RETRY_SECONDS = 0.5
"""The wait after an ``accept()`` failed for want of a resource, before trying again."""
ACCEPT_BATCH = 100
"""Connections taken from the queue at most at one wake-up (asyncio's server: its backlog)."""
LOG_INTERVAL = 30.0
"""At most one log line per listener and kind of trouble (accept failure, refusal) this often."""
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LISTENER_GONE = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})


class ConnectionCapError(Exception):
    """The TCP listener's connection cap does not fit the open-files limit."""


def open_files_limit() -> int:
    """kukeond's soft ``RLIMIT_NOFILE`` (what ``accept()`` runs into)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 2**31


def tcp_connection_cap(requested: int, *, open_files: int, unix_sessions: int) -> int:
    """The most TCP connections the listener holds open.

    ``requested`` is ``apiMaxConnections`` (0: ``DEFAULT_MAX_TCP_CONNECTIONS``, lowered to
    what the limit leaves). ``unix_sessions`` is what the unix socket's requests may hold
    at once (``apiMaxRequestsInflight`` + ``apiMaxLongRunning``): kept free with
    ``OWN_DESCRIPTORS`` so the local admin is never locked out. Raises
    ``ConnectionCapError`` when the cap cannot fit.
    """
    reserve = OWN_DESCRIPTORS + unix_sessions
    room = open_files - reserve
    kept = (
        f"kukeond keeps {reserve} for itself ({OWN_DESCRIPTORS} + apiMaxRequestsInflight + "
        "apiMaxLongRunning, for the unix socket's requests)"
    )
    if requested > 0:
        if requested > room:
            raise ConnectionCapError(
                f"apiMaxConnections {requested} does not fit the open-files limit "
                f"(RLIMIT_NOFILE) {open_files}: {kept}; raise the limit (LimitNOFILE=, "
                f"ulimit -n) to at least {requested + reserve} or lower apiMaxConnections"
                + (f" to {room} or less" if room > 0 else "")
            )
        return requested
    if room < MIN_TCP_CONNECTIONS:
        raise ConnectionCapError(
            f"the TCP API listener needs an open-files limit (RLIMIT_NOFILE) of at least "
            f"{reserve + MIN_TCP_CONNECTIONS}, found {open_files}: {kept} and at least "
            f"{MIN_TCP_CONNECTIONS} for TCP connections; raise the limit (LimitNOFILE=, "
            "ulimit -n) or lower apiMaxRequestsInflight / apiMaxLongRunning"
        )
    return min(DEFAULT_MAX_TCP_CONNECTIONS, room)


class ListenerMetrics:
    """The listeners' series in one registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.open = Gauge(
            "kukeon_api_connections",
            "API connections open now (TCP: accepted, TLS handshake included).",
            ["listener"],
            registry=registry,
        )
        self.refused = Counter(
            "kukeon_api_connections_refused",
            "API connections closed at once because the listener held apiMaxConnections.",
            ["listener"],
            registry=registry,
        )
        self.accept_errors = Counter(
            "kukeon_api_accept_errors",
            "Failed accept() calls on an API listener (EMFILE: out of open files, ...).",
            ["listener"],
            registry=registry,
        )


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, ListenerMetrics] = (
    weakref.WeakKeyDictionary()
)


def listener_metrics(registry: CollectorRegistry | None) -> ListenerMetrics:
    """The series in ``registry`` (made once per registry); unregistered without one."""
    if registry is None:
        return ListenerMetrics(None)
    metrics = _METRICS.get(registry)
    if metrics is None:
        metrics = _METRICS[registry] = ListenerMetrics(registry)
    return metrics


class _Throttled:
    """One warning line at most every ``LOG_INTERVAL``: the first time at once, then how
    many times it happened since the line before."""

    def __init__(self) -> None:
        self._count = 0
        self._last: float | None = None

    def note(self, what: Callable[[str], str]) -> None:
        """``what(how_often)``: the line, made only when it is written."""
        now = time.monotonic()
        self._count += 1
        if self._last is None:
            log.warning("%s", what("once"))
        elif now - self._last >= LOG_INTERVAL:
            log.warning("%s", what(f"{self._count} times in the last {now - self._last:.0f} s"))
        else:
            return
        self._count, self._last = 0, now


def _set_once(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class _Slot:
    """One open connection's place under the cap, given back once."""

    __slots__ = ("_held", "_site")

    def __init__(self, site: AcceptingSite) -> None:
        self._site = site
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._site._released()


class _CountedProtocol(asyncio.Protocol):
    """aiohttp's connection handler, giving its slot back when the connection ends."""

    def __init__(self, inner: asyncio.Protocol, slot: _Slot) -> None:
        self._inner = inner
        self._slot = slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._slot.release()


class AcceptingSite(web.BaseSite):
    """Serves ``runner`` on ``sock`` (bound, not yet listening) with ``AcceptingSite``'s
    accept loop; ``max_connections`` None: no cap (the unix socket, the local admin's)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        listener: str,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
        handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT,
        metrics: ListenerMetrics | None = None,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._sock = sock
        self._listener = listener
        self._name = f"{listener}:{sock.getsockname()!r}"  # kept: the socket closes at stop
        self._max = max_connections
        self._handshake_timeout = handshake_timeout
        self._metrics = metrics if metrics is not None else ListenerMetrics(None)
        self._open = 0
        self._supervisor = Supervisor()
        self._handshakes: set[asyncio.Task[None]] = set()
        self._accept_trouble = _Throttled()
        self._refusals = _Throttled()

    @property
    def name(self) -> str:
        return self._name

    @property
    def open_connections(self) -> int:
        return self._open

    async def start(self) -> None:
        await super().start()
        self._sock.setblocking(False)
        self._sock.listen(self._backlog)
        self._metrics.open.labels(self._listener).set(0)
        self._metrics.refused.labels(self._listener)
        self._metrics.accept_errors.labels(self._listener)
        self._supervisor.start(f"api-accept-{self._listener}", self._accept, component="api")

    async def stop(self) -> None:
        await self._supervisor.stop()
        handshakes = list(self._handshakes)
        for task in handshakes:
            task.cancel()
        await asyncio.gather(*handshakes, return_exceptions=True)
        self._sock.close()
        await super().stop()

    async def _accept(self) -> None:
        while True:
            await self._readable()
            for _ in range(ACCEPT_BATCH):  # as asyncio's: a flood is taken in batches
                try:
                    conn, _ = self._sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionAbortedError:
                    continue  # the client gave up while it waited in the queue
                except OSError as error:
                    if error.errno in _LISTENER_GONE:
                        raise
                    self._accept_failed(error)
                    if error.errno in _OUT_OF_RESOURCES:
                        await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                    break
                self._admit(conn)
            await asyncio.sleep(0)  # the connections just taken get their turn

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self._sock.fileno(), _set_once, ready)
        try:
            await ready
        finally:
            loop.remove_reader(self._sock.fileno())

    def _admit(self, conn: socket.socket) -> None:
        if self._max is not None and self._open >= self._max:
            self._refuse(conn)
            return
        self._open += 1
        self._metrics.open.labels(self._listener).inc()
        task = asyncio.create_task(self._hand_over(conn, _Slot(self)))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def _accept_failed(self, error: OSError) -> None:
        self._metrics.accept_errors.labels(self._listener).inc()
        self._accept_trouble.note(
            lambda how_often: (
                f"API {self._listener} listener: accept() failed {how_often}: "
                f"{error.strerror or error} (open-files limit {open_files_limit()}, "
                f"{self._open} connections of this listener open); said again at most "
                f"every {LOG_INTERVAL:g} s"
            )
        )

    def _refuse(self, conn: socket.socket) -> None:
        conn.close()
        self._metrics.refused.labels(self._listener).inc()
        self._refusals.note(
            lambda how_often: (
                f"API {self._listener} listener: a new connection closed at once "
                f"{how_often}: {self._max} are open (apiMaxConnections); said again at "
                f"most every {LOG_INTERVAL:g} s"
            )
        )

    def _released(self) -> None:
        self._open -= 1
        self._metrics.open.labels(self._listener).dec()

    async def _hand_over(self, conn: socket.socket, slot: _Slot) -> None:
        """The TLS handshake (bounded), then the connection is aiohttp's; the slot comes
        back when it ends, or here when the handshake fails."""
        server = self._runner.server
        assert server is not None
        handed = False
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _CountedProtocol(server(), slot),
                conn,
                ssl=self._ssl_context,
                ssl_handshake_timeout=(
                    self._handshake_timeout if self._ssl_context is not None else None
                ),
            )
            handed = True
        except (OSError, ssl.SSLError, EOFError) as error:
            # Port scanners, clients that give up, a handshake past its time: not news.
            log.debug("API %s connection ended before TLS was up: %s", self._listener, error)
        finally:
            if not handed:
                conn.close()
                slot.release()
