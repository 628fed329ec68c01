"""A registry's answer bodies as kukeond takes them: in the codings it asked for, decoded
by kukeon within a bound, and at a pace a registry cannot stretch for ever.

The registry is the attacker here: whoever may write a cell names it. aiohttp decodes every
``Content-Encoding`` it knows whatever was asked for: a registry answering
``Content-Encoding: zstd`` had its body decoded with a window it chose (up to 128 MiB)
outside kukeond's budget of zstd windows (``zstdwindow``). So registry sessions are made
with ``auto_decompress=False`` and a body is decoded here: ``gzip`` (``x-gzip`` as RFC 9110
says) and ``deflate``, the codings ``ACCEPT_ENCODING`` offers (a 32 KiB window; every step's
output bounded, so a bomb inflates no faster than its reader stops it), or none. Any other
coding, or several, is refused before the body is read (:func:`coding_refusal`).

A registry that drips its answer, one byte every minute, kept a pull (and the cell waiting
for it, and the node-wide room lock of pulls into limited realms) for ever: aiohttp's
``sock_read`` timeout restarts at every byte. So every :data:`PACE_BYTES` of a body must
arrive within :data:`PACE_SECONDS` of the previous ones (raw bytes: a fast compressed body
passes), and a document (manifest, token, error) is read whole within
:data:`DOCUMENT_SECONDS`. What breaks either is a :class:`BodyTooSlowError`.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from typing import Final

import aiohttp

__all__ = [
    "ACCEPT_ENCODING",
    "DOCUMENT_SECONDS",
    "HEAD_SECONDS",
    "PACE_BYTES",
    "PACE_SECONDS",
    "BodyCodingError",
    "BodyTooSlowError",
    "body_chunks",
    "coding_refusal",
]

ACCEPT_ENCODING: Final = "gzip, deflate"
"""What a registry session offers; not aiohttp's default, which offers zstd (and br)."""
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_IDENTITY: Final = frozenset({"", "identity"})

PACE_BYTES: Final = 16 * 1024
PACE_SECONDS: Final = 60.0
"""Each 16 KiB of a body within a minute of the previous 16 KiB: 273 bytes a second at
least, on average over every minute, which no working link is slower than."""
DOCUMENT_SECONDS: Final = 120.0
"""A manifest, token or error document (4 MiB at most) is read whole within this."""
HEAD_SECONDS: Final = 120.0
"""A request's answer head (connection, redirects, status and headers) arrives within this:
aiohttp's ``sock_read`` timeout restarts at every byte of a dripped header."""


class BodyCodingError(ValueError):
    """A body coded as kukeon did not ask, or whose coding does not decode."""


class BodyTooSlowError(TimeoutError):
    """A body that did not arrive at the pace every registry answer must keep."""


def coding_refusal(response: aiohttp.ClientResponse) -> str | None:
    """Why ``response``'s ``Content-Encoding`` is not taken (None: it is)."""
    coding = _coding(response)
    if coding in _IDENTITY or coding in _GZIP or coding == "deflate":
        return None
    return (
        f"the answer is coded {coding!r} (Content-Encoding), which kukeond did not ask for: "
        f"it takes {ACCEPT_ENCODING} or none"
    )


def _coding(response: aiohttp.ClientResponse) -> str:
    return ",".join(response.headers.getall("Content-Encoding", [])).strip().lower()


async def body_chunks(response: aiohttp.ClientResponse, size: int) -> AsyncIterator[bytes]:
    """``response``'s body decoded, in chunks of at most ``size`` bytes, at the pace every
    registry answer must keep (:class:`BodyTooSlowError`); a coding refused or broken is a
    :class:`BodyCodingError`. Stopping early inflates nothing more."""
    why = coding_refusal(response)
    if why is not None:
        raise BodyCodingError(why)
    coding = _coding(response)
    raw = _paced(response, size)
    if coding in _IDENTITY:
        async for chunk in raw:
            yield chunk
        return
    async for chunk in _inflated(raw, coding, size):
        yield chunk


async def _paced(response: aiohttp.ClientResponse, size: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    since, arrived = loop.time(), 0
    chunks = response.content.iter_chunked(size).__aiter__()
    while True:
        try:
            async with asyncio.timeout_at(since + PACE_SECONDS):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise BodyTooSlowError(
                f"the registry sent {arrived} bytes in {PACE_SECONDS:g} s, less than the "
                f"{PACE_BYTES} bytes every answer must send in that time"
            ) from None
        arrived += len(chunk)
        if arrived >= PACE_BYTES:
            since, arrived = loop.time(), 0
        yield chunk


def _decompressor(coding: str, first: int) -> zlib._Decompress:
    if coding in _GZIP:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    # "deflate" is zlib-wrapped (RFC 9110), but some servers send it raw: a zlib stream's
    # first byte names method 8 in its low nibble.
    return zlib.decompressobj(zlib.MAX_WBITS if first & 0x0F == 8 else -zlib.MAX_WBITS)


async def _inflated(raw: AsyncIterator[bytes], coding: str, size: int) -> AsyncIterator[bytes]:
    inflater: zlib._Decompress | None = None
    async for chunk in raw:
        pending = chunk
        while pending or inflater is not None:
            if inflater is None or (inflater.eof and pending):
                if inflater is not None and coding not in _GZIP:
                    raise BodyCodingError(f"the {coding} body has data after its end")
                # gzip: another member (RFC 1952 lets a stream be several).
                inflater = _decompressor(coding, pending[0])
            try:
                out = inflater.decompress(pending, size)
            except zlib.error as error:
                raise BodyCodingError(f"the {coding} body does not decode: {error}") from None
            pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            if out:
                yield out
            # A full step may leave output in zlib with all input taken: ask again for it.
            if not pending and (len(out) < size or inflater.eof):
                break
    if inflater is not None and not inflater.eof:
        raise BodyCodingError(f"the {coding} body ends before its coding does")
