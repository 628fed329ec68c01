"""One HTTP/1.1 GET for an httpGet probe, on a fresh connection, over asyncio streams.

A probe needs the status code, the first bytes of the body and a redirect's Location,
nothing else: no cookies, no pooling (a server that stops accepting connections must fail
its probe, so every check opens its own). The caller follows a redirect to the cell's own
address (`redirect_target`), as kubelet does, with a GET of its own. A full HTTP client
costs about twice the CPU per check of this (bench/probe_check_bench.py), and a node
probes hundreds of cells every second. The reply is read only as far as the status
line, the headers (bounded) and ``limit`` bytes of body; the connection is then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import NamedTuple
from urllib.parse import quote, urljoin, urlsplit

HEADERS_MAX = 64 * 1024
"""A reply whose status line and headers exceed this is refused (a probe reads no more)."""

REDIRECTS_MAX = 10
"""Redirects followed before the check fails, as Go's client (kubelet's) stops after 10."""


class HttpReplyError(ValueError):
    """The peer did not answer with an HTTP/1.x status line and headers."""


class HttpReply(NamedTuple):
    status: int
    body: bytes
    """Up to the caller's ``limit`` bytes of it."""
    location: str | None = None
    """The Location header of a 3xx reply."""


class HttpTarget(NamedTuple):
    """Where a GET goes on the cell's address."""

    scheme: str
    """``http`` or ``https``."""
    port: int
    path: str
    """The path and query."""

    def url(self, address: str) -> str:
        host = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def redirect_target(reply: HttpReply, address: str, current: HttpTarget) -> HttpTarget | None:
    """Where a redirect leads when kubelet would follow it: a 3xx with a Location on the
    same host (the cell's address; any port, http or https). None for any other reply,
    and for a redirect to another host, which kubelet does not follow (the 3xx itself is
    the answer: a success). Raises HttpReplyError for a Location that is no URL."""
    if not 300 <= reply.status < 400 or not reply.location:
        return None
    try:
        parts = urlsplit(urljoin(current.url(address), reply.location))
        port = parts.port
    except ValueError:
        raise HttpReplyError(f"redirected to an invalid location {reply.location!r}") from None
    if parts.scheme not in ("http", "https") or parts.hostname != address.lower():
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HttpTarget(parts.scheme, port or (443 if parts.scheme == "https" else 80), path)


def _insecure_context() -> ssl.SSLContext:
    # As Kubernetes: an https probe does not verify the certificate (the cell's own).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS: ssl.SSLContext | None = None


def request_bytes(host: str, port: int, path: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request: the probe's headers replace the defaults of the same name (Host,
    User-Agent, Accept); the connection is always closed after the reply."""
    fields = {"host": ("Host", f"{host}:{port}"), "user-agent": ("User-Agent", "kukeon-probe/1.0")}
    fields["accept"] = ("Accept", "*/*")
    for name, value in headers:
        fields[name.lower()] = (name, value)
    fields["connection"] = ("Connection", "close")
    target = quote(path, safe="/:?&=%@!$'()*+,;~-._#[]")
    lines = [f"GET {target} HTTP/1.1", *(f"{name}: {value}" for name, value in fields.values())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")


async def http_get(
    address: str,
    port: int,
    path: str,
    headers: Iterable[tuple[str, str]] = (),
    *,
    tls: bool = False,
    limit: int = 1024,
) -> HttpReply:
    """The status code, up to ``limit`` bytes of the body of ``GET path`` and a
    redirect's Location.

    Raises OSError (connect, reset), ssl.SSLError, or HttpReplyError; the caller bounds the
    whole exchange with its timeout.
    """
    global _TLS
    context = None
    if tls:
        _TLS = _TLS or _insecure_context()
        context = _TLS
    host = f"[{address}]" if ":" in address else address
    reader, writer = await asyncio.open_connection(address, port, ssl=context, limit=HEADERS_MAX)
    try:
        writer.write(request_bytes(host, port, path, list(headers)))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpReplyError("the reply's headers are too long") from None
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise HttpReplyError("the connection was closed without a reply") from None
            head = error.partial
        status = _status(head)
        body = await reader.read(limit) if limit > 0 else b""
        return HttpReply(status, body, _location(head) if 300 <= status < 400 else None)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _status(head: bytes) -> int:
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        shown = line[:80].decode("latin-1")
        raise HttpReplyError(f"not an HTTP reply: {shown!r}")
    code = int(parts[1])
    if not 100 <= code <= 999:
        raise HttpReplyError(f"not an HTTP status: {code}")
    return code


def _location(head: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"location":
            return value.strip().decode("latin-1") or None
    return None
