"""One HTTP/1.1 GET for an httpGet probe, on a fresh connection, over asyncio streams.

A probe needs the status code and the first bytes of the body, nothing else: no
redirects, no cookies, no pooling (a server that stops accepting connections must fail its
probe, so every check opens its own). A full HTTP client costs about twice the CPU per
check of this (bench/probe_check_bench.py), and a node probes hundreds of cells every
second. The reply is read only as far as the status line, the headers (bounded) and
``limit`` bytes of body; the connection is then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from urllib.parse import quote

HEADERS_MAX = 64 * 1024
"""A reply whose status line and headers exceed this is refused (a probe reads no more)."""


class HttpReplyError(ValueError):
    """The peer did not answer with an HTTP/1.x status line and headers."""


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
) -> tuple[int, bytes]:
    """The status code and up to ``limit`` bytes of the body of ``GET path``.

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
        return status, body
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
