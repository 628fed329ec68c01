"""Which of several etcd endpoints the channel dials, each endpoint resolved and tried alone.

gRPC's channel fails over between the addresses of one target (pick_first, with Happy
Eyeballs: a closed port or a blackholed address first in the list costs ~250 ms, measured),
but several endpoints make one target only once kukeon has resolved their host names, and
one name that did not resolve failed the whole connection (``ResolveFailed``) although the
other endpoints answered. etcd's Go client resolves and dials each endpoint on its own and
uses those that answer; so does this: every endpoint is resolved (and its port tried over
TCP) concurrently, each bounded in time; the target lists those that answered first, then
those that resolved but did not answer yet (gRPC keeps trying them, so a member that comes
back is used), and leaves out only names that did not resolve. The connection fails only
when no endpoint resolves, with an error naming each endpoint and why.

A unix socket endpoint (``unix:///path`` or, TLS over the socket, ``unixs:///path``:
etcdctl's spelling) has no name to resolve: it is dialed alone, never beside others.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import Unavailable

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.5
"""Once one endpoint answered, how much longer the others get before the channel opens:
a blackholed one must not hold the connection for its whole timeout."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ResolveFailed(Unavailable):
    """No endpoint's host name resolved while connecting: nothing reached etcd, and DNS may
    answer again, so the ``Retrier`` tries again as after a refused connection."""


UNIX_SCHEMES = ("unix", "unixs")
UNIX_TLS_NAME = "localhost"
"""The name a TLS server on a unix socket is verified for (gRPC's authority for a unix
target) unless ``server_name`` says another; the embedded etcd's certificate names it."""
SOCKET_PATH_MAX = 107
"""Bytes of a unix socket's path: ``sun_path`` holds 108 with the terminating NUL."""


def endpoint_scheme(endpoint: str) -> str:
    """``http``, ``https``, ``unix`` or ``unixs`` (``http`` when none is written)."""
    scheme, separator, _ = endpoint.strip().partition("://")
    return scheme.lower() if separator else "http"


def unix_socket_path(endpoint: str) -> str | None:
    """The socket of a ``unix(s):///absolute/path`` endpoint; None for a TCP endpoint."""
    if endpoint_scheme(endpoint) not in UNIX_SCHEMES:
        return None
    path = endpoint.strip().partition("://")[2]
    if not path.startswith("/"):
        raise ValueError(
            f"etcd endpoint {endpoint!r}: a unix socket endpoint is unix:///absolute/path "
            "(or unixs:// for TLS over the socket)"
        )
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise ValueError(
            f"etcd endpoint {endpoint!r}: the socket path is {len(os.fsencode(path))} bytes, "
            f"over the {SOCKET_PATH_MAX} a unix socket address holds"
        )
    return path


def split_endpoint(endpoint: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``host:port`` or ``http(s)://host:port`` (port 2379)."""
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(
            f"etcd endpoint {endpoint!r} is not host:port, http(s)://host:port or unix(s):///path"
        )
    return parts.scheme, parts.hostname, parts.port or 2379


@dataclass(frozen=True)
class EndpointState:
    """What one endpoint was found to be at a check."""

    endpoint: str
    host: str
    port: int
    addresses: tuple[Address, ...] = ()
    answered: bool = False
    failure: str = ""
    """Why it is not usable (empty when it answered)."""

    def describe(self) -> str:
        return f"{self.endpoint}: {self.failure or 'takes TCP connections'}"


async def _resolve(host: str, port: int, within: float) -> tuple[Address, ...]:
    with contextlib.suppress(ValueError):
        return (ipaddress.ip_address(host),)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):  # a resolver that hangs must not hold the start
        infos = await loop.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return tuple(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


async def _resolved(endpoint: str, within: float) -> EndpointState:
    _, host, port = split_endpoint(endpoint)
    try:
        addresses = await _resolve(host, port, within)
    except TimeoutError:
        failure = f"host {host!r} does not resolve: no answer within {within:g}s"
    except OSError as error:  # socket.gaierror, or an unreachable resolver
        failure = f"host {host!r} does not resolve: {error.strerror or error}"
    else:
        if addresses:
            return EndpointState(endpoint, host, port, addresses)
        failure = f"host {host!r} does not resolve: no address"
    return EndpointState(endpoint, host, port, failure=failure)


async def _tried(state: EndpointState) -> EndpointState:
    """``state`` with ``answered`` once a TCP connection to one of its addresses opened
    (the caller bounds the time; what it cuts short keeps its addresses, unanswered)."""
    failures: list[str] = []
    for address in state.addresses:
        try:
            _, writer = await asyncio.open_connection(str(address), state.port)
        except OSError as error:
            # asyncio's message is "Connect call failed (...)": the errno says what failed
            reason = os.strerror(error.errno) if error.errno else str(error)
            failures.append(f"{_address(address, state.port)}: {reason}")
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return EndpointState(state.endpoint, state.host, state.port, state.addresses, True)
    return EndpointState(
        state.endpoint, state.host, state.port, state.addresses, failure="; ".join(failures)
    )


def _address(address: Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


async def check_endpoints(endpoints: Sequence[str], *, within: float) -> list[EndpointState]:
    """Resolve every endpoint and try its port, concurrently, in at most ~2 x ``within`` seconds
    (and ``SETTLE_SECONDS`` after the first endpoint answered); in ``endpoints``' order."""
    resolved = await asyncio.gather(*(_resolved(endpoint, within) for endpoint in endpoints))
    tries = {
        index: asyncio.create_task(_tried(state))
        for index, state in enumerate(resolved)
        if state.addresses
    }
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + within
    pending = set(tries.values())
    try:
        while pending and (remaining := deadline - loop.time()) > 0:
            done, pending = await asyncio.wait(
                pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if any(task.result().answered for task in done):
                deadline = min(deadline, loop.time() + SETTLE_SECONDS)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    waited = loop.time() - started
    states = list(resolved)
    for index, task in tries.items():
        if task.cancelled():
            state = resolved[index]
            addresses = ", ".join(_address(a, state.port) for a in state.addresses)
            states[index] = EndpointState(
                state.endpoint,
                state.host,
                state.port,
                state.addresses,
                failure=f"no TCP answer from {addresses} within {waited:.1f}s",
            )
        else:
            states[index] = task.result()
    return states


def describe(states: Sequence[EndpointState]) -> str:
    return "; ".join(state.describe() for state in states)


def grpc_target(states: Sequence[EndpointState]) -> str:
    """One gRPC target for the endpoints that resolved, those that answered first, so
    pick_first dials them first and fails over to the others.

    gRPC's ``ipv4:``/``ipv6:`` schemes take address lists, one family per target: IPv4
    when the endpoint dialed first has an IPv4 address (as before when any endpoint had
    one), else IPv6, so an IPv6-only endpoint that answered is not dropped for IPv4 ones
    that did not. ``ResolveFailed`` when no endpoint resolved.
    """
    ordered = [s for s in states if s.answered] + [
        s for s in states if s.addresses and not s.answered
    ]
    if not ordered:
        raise ResolveFailed(f"cannot resolve any etcd endpoint ({describe(states)})")
    version = 4 if any(a.version == 4 for a in ordered[0].addresses) else 6
    listed = [
        _address(address, state.port)
        for state in ordered
        for address in state.addresses
        if address.version == version
    ]
    return f"ipv{version}:" + ",".join(dict.fromkeys(listed))


def tls_name(states: Sequence[EndpointState]) -> str:
    """The host a multi-endpoint channel verifies every server certificate for: the first
    endpoint that answered (the one dialed first), else the first that resolved, else the
    first. A name that does not resolve (a typo, a member gone) is nobody's certificate's."""
    for usable in (lambda s: s.answered, lambda s: bool(s.addresses), lambda s: True):
        for state in states:
            if usable(state):
                return state.host
    raise ValueError("no etcd endpoint")


class EndpointReporter:
    """Logs each endpoint's failure once, when it changes, and its return: never per request."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def report(self, states: Sequence[EndpointState]) -> None:
        usable = [s.endpoint for s in states if s.answered]
        for state in states:
            before = self._last.get(state.endpoint, "")
            self._last[state.endpoint] = state.failure
            if state.failure and state.failure != before:
                log.warning(
                    "etcd endpoint %s fails: %s; %s, %s",
                    state.endpoint,
                    state.failure,
                    "kept for failover" if state.addresses else "left out of the connection",
                    f"dialing {', '.join(usable)} first"
                    if usable
                    else "and no endpoint takes a connection",
                )
            elif before and not state.failure:
                log.info("etcd endpoint %s takes TCP connections again", state.endpoint)
