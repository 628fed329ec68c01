"""One HTTP/1.1 request and its answer on a connection of its own, over asyncio streams.

What a short-lived caller (a kukectl command: a few requests one after the other) needs
from the API, without aiohttp: loading aiohttp (its connector builds TLS contexts with
the system's CA store at import) is most of the time and memory such a process would
spend. The connection is a unix socket, or TCP with the caller's TLS context; it is closed
after the answer (``Connection: close``), so nothing is pooled or left open. Answers with
a ``Content-Length``, chunked or read until the server closes are all understood.
Streams, uploads, watches and WebSockets stay with ``aiohttp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import NamedTuple

MAX_HEADER_LINES = 100
LINE_LIMIT = 1 << 16
"""The longest line of a head or chunk framing read (the streams' buffer limit)."""
MAX_ANSWER_BYTES = 256 << 20
"""The largest answer read: a hostile or broken server's endless body ends there, not in
all of the machine's memory (a list of every cell of a large fleet is tens of MiB)."""


class Answer(NamedTuple):
    status: int
    reason: str
    body: bytes
    warnings: tuple[str, ...] = ()
    """The answer's ``Warning`` headers, in order (kube-apiserver sends one per warning)."""
    retry_after: str | None = None
    """The answer's ``Retry-After`` header, if any (a 429's wait)."""


class MalformedAnswerError(ConnectionError):
    """The server's answer is not HTTP/1.x as this client reads it (not HTTP at all, a bad
    header line, a bad chunk size): the server was reached and answered, so the caller
    says it as that answer (``answer_is``), not as a server it could not reach."""

    @property
    def answer_is(self) -> str:
        """What the answer is, to follow "the server's answer to GET /x is"."""
        return f"not valid HTTP: {self}"


class AnswerCutShortError(MalformedAnswerError):
    """The connection closed after the answer began and before it ended."""

    @property
    def answer_is(self) -> str:
        return f"cut short: {self}"


class AnswerTooLargeError(MalformedAnswerError):
    """The answer is larger than ``MAX_ANSWER_BYTES``."""

    def __init__(self) -> None:
        self.limit = MAX_ANSWER_BYTES
        super().__init__(
            f"larger than {_mib(self.limit)}, the most kukectl reads (no answer of the kukeon "
            "API is that large); not read further"
        )

    @property
    def answer_is(self) -> str:
        return str(self)


class NoAnswerError(ConnectionError):
    """The server closed the connection without a byte of an answer (a server stopping,
    or not one that speaks first): nothing was answered, so no malformed answer."""


def _mib(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"


async def exchange(
    *,
    unix_path: str | None,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    connect_timeout: float,
    request: bytes,
) -> Answer:
    """Send ``request`` (a whole HTTP/1.1 request) and read the answer. ``OSError`` (which
    includes ``ssl.SSLError``, :class:`NoAnswerError` and :class:`MalformedAnswerError`)
    when the exchange fails; the caller bounds the whole with its own timeout."""
    try:
        async with asyncio.timeout(connect_timeout):
            if unix_path is not None:
                reader, writer = await asyncio.open_unix_connection(unix_path, limit=LINE_LIMIT)
            else:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=LINE_LIMIT
                )
    except TimeoutError as exc:  # this timeout's own; the caller's arrives as a cancel
        raise ConnectionError(f"no connection within {connect_timeout:g}s") from exc
    try:
        writer.write(request)
        await writer.drain()
        status, reason, headers, warnings = await _head(reader)
        body = await _body(reader, headers)
        return Answer(status, reason, body, tuple(warnings), headers.get("retry-after"))
    finally:
        writer.close()
        # The answer is read: a connection reset while closing is not news.
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def encode_request(
    method: str,
    target: str,
    *,
    host: str,
    headers: Mapping[str, str],
    body: bytes | None,
) -> bytes:
    """The bytes of one request; ``target`` is the path and its encoded query."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def _line(reader: asyncio.StreamReader) -> bytes:
    """One line of the answer's head or of its chunk framing (b"" at the end of the stream)."""
    try:
        return await reader.readline()
    except ValueError as exc:  # asyncio's LimitOverrunError, as readline raises it
        raise MalformedAnswerError(
            f"a line of its head or chunk framing is longer than {_mib(LINE_LIMIT)}"
        ) from exc


async def _head(reader: asyncio.StreamReader) -> tuple[int, str, dict[str, str], list[str]]:
    """The status, reason and headers (the last of a name), and every ``Warning``."""
    first = await _line(reader)
    if not first:
        raise NoAnswerError("the server closed the connection without answering")
    status_line = first.decode("latin-1").rstrip("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise MalformedAnswerError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    warnings: list[str] = []
    for _ in range(MAX_HEADER_LINES):
        raw = await _line(reader)
        if not raw:
            raise AnswerCutShortError("the connection closed before the end of its headers")
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:
            return int(code), reason, headers, warnings
        name, sep, value = line.partition(":")
        if not sep:
            raise MalformedAnswerError(f"malformed header line {line[:80]!r}")
        name = name.strip().lower()
        headers[name] = value.strip()
        if name == "warning":
            warnings.append(value.strip())
    raise MalformedAnswerError(f"more than {MAX_HEADER_LINES} header lines")


async def _exactly(reader: asyncio.StreamReader, size: int, what: str) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise AnswerCutShortError(
            f"the connection closed after {len(exc.partial)} of the {size} bytes of {what}"
        ) from exc


async def _body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _chunked(reader)
    if (length := headers.get("content-length")) is not None:
        if not length.isdigit():
            raise MalformedAnswerError(f"bad Content-Length {length[:20]!r}")
        if int(length) > MAX_ANSWER_BYTES:
            raise AnswerTooLargeError()
        return await _exactly(reader, int(length), "the body announced")
    body = bytearray()
    while chunk := await reader.read(1 << 20):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise AnswerTooLargeError()
    return bytes(body)


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        raw = await _line(reader)
        if not raw:
            raise AnswerCutShortError(
                f"the connection closed after {len(body)} bytes, before the last chunk"
            )
        size_line = raw.decode("latin-1").strip()
        size_text = size_line.partition(";")[0]
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise MalformedAnswerError(f"bad chunk size {size_line[:20]!r}") from exc
        if size == 0:
            while (await _line(reader)).strip():  # trailers, then the blank line
                pass
            return bytes(body)
        if len(body) + size > MAX_ANSWER_BYTES:
            raise AnswerTooLargeError()
        body += await _exactly(reader, size, "a chunk")
        await _exactly(reader, 2, "a chunk's end")
