"""The registry as the attacker: a registry on loopback (listed, as kukeond's configuration
must list it) answers a pull with codings it was not asked for, bombs in the codings it was,
bodies and heads dripped a byte at a time, huge headers and redirects nowhere good. Every
such pull fails quickly with a RegistryError saying why, and nothing of it is stored.

What the registry client already refused elsewhere is tested beside it: a corrupt or
oversized blob and an oversized manifest (test_registry_client.py), redirects and token
services on the node (test_registry_access.py), layer bombs (test_layer_meter.py)."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from backports import zstd

from kukeon.runtime.containerd import registryauth, registrybody, registryerrors
from kukeon.runtime.containerd.registry import RegistryClient
from kukeon.runtime.containerd.registryaccess import RegistryRefusedError
from kukeon.runtime.containerd.registryerrors import (
    DigestMismatchError,
    RegistryCodingError,
    RegistryError,
    RegistryUnreachableError,
    UnsupportedManifestError,
)
from tests.fixtures.services import free_tcp_port
from tests.unit.runtime.test_registry_client import FakeImage, MemoryBlobStore, make_image

MiB = 1024 * 1024
Answer = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]


async def plain(_request: web.Request, body: bytes) -> web.StreamResponse:
    return web.Response(body=body, content_type="application/octet-stream")


def coded(coding: str, encode: Callable[[bytes], bytes]) -> Answer:
    async def answer(_request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(
            body=encode(body),
            content_type="application/octet-stream",
            headers={"Content-Encoding": coding},
        )

    return answer


def dripped(every: float) -> Answer:
    async def answer(request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        for position in range(len(body)):
            await response.write(body[position : position + 1])
            await asyncio.sleep(every)
        return response

    return answer


class Hostile:
    """One image, its manifest answered by ``manifest`` and its blobs by ``blob``."""

    def __init__(self, image: FakeImage) -> None:
        self.image = image
        self.manifest: Answer = plain
        self.blob: Answer = plain

    async def serve_manifest(self, request: web.Request) -> web.StreamResponse:
        response = await self.manifest(request, self.image.manifest)
        response.content_type = self.image.media_type
        return response

    async def serve_blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        blobs = {self.image.config_digest: self.image.config}
        blobs.update(zip(self.image.layer_digests, self.image.layers, strict=True))
        if digest == self.image.config_digest:
            return await plain(request, blobs[digest])
        return await self.blob(request, blobs[digest])


CLOSE_SECONDS = 0.5
"""How long closing a hostile registry waits for the answers it is still sending before it
cuts them: aiohttp's default is a minute, which a dripped answer always takes in full."""


async def serve(registry: Hostile) -> TestServer:
    """``registry`` on a loopback port (``server.port``); close it when done."""
    app = web.Application()
    app.router.add_get(r"/v2/{repo:.+}/manifests/{ref}", registry.serve_manifest)
    app.router.add_get(r"/v2/{repo:.+}/blobs/{digest}", registry.serve_blob)
    server = TestServer(app, host="127.0.0.1", port=free_tcp_port(), shutdown_timeout=CLOSE_SECONDS)
    await server.start_server()
    return server


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[Hostile, str]]:
    registry = Hostile(make_image(layer_count=1))
    server = await serve(registry)
    try:
        yield registry, f"127.0.0.1:{server.port}"
    finally:
        await server.close()


async def pull(host: str, store: MemoryBlobStore | None = None) -> Any:
    async with RegistryClient(insecure_registries=[host]) as client:
        async with asyncio.timeout(30):  # a hang is a failure, not a stuck run
            return await client.pull(f"{host}/app:1", store=store or MemoryBlobStore())


ZSTD_LONG = {int(zstd.CompressionParameter.window_log): 27}


@pytest.mark.parametrize("where", ["manifest", "blob"])
@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        # A window of 128 MiB (--long=27) the node's zstd budget never granted.
        ("zstd", lambda data: zstd.compress(data, options=ZSTD_LONG)),
        ("br", lambda data: data),
        ("compress", lambda data: data),
        ("gzip, gzip", lambda data: gzip.compress(gzip.compress(data))),
    ],
)
async def test_a_coding_not_asked_for_is_refused_undecoded(
    hostile: tuple[Hostile, str], where: str, coding: str, encode: Callable[[bytes], bytes]
) -> None:
    """Before, aiohttp decoded every coding it knew: a zstd manifest or layer was taken,
    decoded outside kukeond's zstd window budget."""
    registry, host = hostile
    setattr(registry, where, coded(coding, encode))
    store = MemoryBlobStore()
    with pytest.raises(RegistryCodingError) as refused:
        await pull(host, store)
    message = str(refused.value)
    assert f"the answer is coded {coding!r} (Content-Encoding)" in message, message
    assert "it takes gzip, deflate or none" in message
    assert not set(registry.image.layer_digests) & set(store.blobs)


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("gzip", lambda data: gzip.compress(data[:1000]) + gzip.compress(data[1000:])),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),
    ],
)
async def test_the_codings_asked_for_are_decoded(
    hostile: tuple[Hostile, str], coding: str, encode: Callable[[bytes], bytes]
) -> None:
    registry, host = hostile
    registry.manifest = registry.blob = coded(coding, encode)
    store = MemoryBlobStore()
    await pull(host, store)
    for layer in registry.image.layers:
        assert layer in store.blobs.values()
    assert store.blobs[registry.image.manifest_digest] == registry.image.manifest


def _bomb(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    parts = [compressor.compress(data)]
    parts += [compressor.compress(zeros) for _ in range(256)]
    return b"".join([*parts, compressor.flush()])


async def test_a_gzip_bomb_stops_at_what_is_read(hostile: tuple[Hostile, str]) -> None:
    """A manifest inflating to 256 MiB stops past 4 MiB, a layer past its size."""
    registry, host = hostile
    registry.manifest = coded("gzip", _bomb)
    with pytest.raises(UnsupportedManifestError, match="larger than 4194304 bytes"):
        await pull(host)
    registry.manifest = plain
    registry.blob = coded("gzip", _bomb)
    with pytest.raises(DigestMismatchError, match="more than the 300000 bytes announced"):
        await pull(host)


async def test_a_blob_longer_than_declared_stops_past_its_size(
    hostile: tuple[Hostile, str],
) -> None:
    """1 MiB more than the manifest declares (uncoded): refused at the first chunk past the
    size, nothing of the layer stored."""
    registry, host = hostile

    async def longer(request: web.Request, body: bytes) -> web.StreamResponse:
        return await plain(request, body + bytes(MiB))

    registry.blob = longer
    store = MemoryBlobStore()
    with pytest.raises(DigestMismatchError, match="more than the 300000 bytes announced"):
        await pull(host, store)
    assert not set(registry.image.layer_digests) & set(store.blobs)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff", "does not decode"),
        (gzip.compress(b"x" * 100_000)[:-20], "ends before its coding does"),
    ],
)
async def test_a_broken_coding_is_said(hostile: tuple[Hostile, str], body: bytes, why: str) -> None:
    registry, host = hostile
    registry.manifest = coded("gzip", lambda _data: body)
    with pytest.raises(RegistryCodingError, match=f"manifest 1: the gzip body {why}"):
        await pull(host)


@pytest.fixture
def quick_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registrybody, "PACE_BYTES", 1024)
    monkeypatch.setattr(registrybody, "PACE_SECONDS", 0.5)
    monkeypatch.setattr(registryerrors, "DOCUMENT_SECONDS", 1.0)
    monkeypatch.setattr(registryauth, "HEAD_SECONDS", 1.0)


@pytest.mark.usefixtures("quick_pace")
@pytest.mark.parametrize("where", ["manifest", "blob"])
async def test_a_dripped_body_is_given_up(hostile: tuple[Hostile, str], where: str) -> None:
    """Before, a byte every 0.1 s (every 119 s in earnest) kept the pull for ever: aiohttp's
    sock_read timeout restarts at every byte."""
    registry, host = hostile
    setattr(registry, where, dripped(0.1))
    with pytest.raises(RegistryUnreachableError, match="too slow: the registry sent"):
        await pull(host)


@pytest.mark.usefixtures("quick_pace")
async def test_a_document_is_read_whole_within_its_time(hostile: tuple[Hostile, str]) -> None:
    """At a pace that passes (6 KB a second) but would take 5 s for this manifest."""
    registry, host = hostile

    async def paced(request: web.Request, manifest: bytes) -> web.StreamResponse:
        body = manifest + b" " * 30_000  # still the same JSON
        response = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        for position in range(0, len(body), 600):
            await response.write(body[position : position + 600])
            await asyncio.sleep(0.1)
        return response

    registry.manifest = paced
    with pytest.raises(RegistryUnreachableError, match="not sent whole within 1 s"):
        await pull(host)


async def raw_server(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> asyncio.Server:
    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await answer(writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", free_tcp_port())


async def _drip_head(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(100):
        writer.write(b"X")
        await writer.drain()
        await asyncio.sleep(0.1)


async def _huge_head(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 * MiB) + b"\r\n\r\n")
    await writer.drain()


async def _many_headers(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 100_000 + b"\r\n")
    await writer.drain()


@pytest.mark.usefixtures("quick_pace")
@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (_drip_head, "no whole answer head within 1 s"),
        (_huge_head, "request failed: "),
        (_many_headers, "request failed: "),
    ],
)
async def test_a_head_dripped_or_huge_is_given_up(
    answer: Callable[[asyncio.StreamWriter], Awaitable[None]], why: str
) -> None:
    server = await raw_server(answer)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(RegistryUnreachableError, match=why):
            await pull(f"127.0.0.1:{port}")
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("location", "error", "why"),
    [
        ("/v2/app/manifests/1", RegistryUnreachableError, "TooManyRedirects"),
        ("file:///etc/passwd", RegistryRefusedError, "a file: URL is no registry.s"),
        ("https://169.254.169.254/latest/meta-data/", RegistryRefusedError, "link-local"),
        ("http://169.254.169.254/latest/meta-data/", RegistryRefusedError, "plain HTTP"),
    ],
)
async def test_a_redirect_nowhere_good_is_not_followed(
    hostile: tuple[Hostile, str], location: str, error: type[RegistryError], why: str
) -> None:
    registry, host = hostile

    async def redirect(_request: web.Request, _body: bytes) -> web.StreamResponse:
        raise web.HTTPFound(location)

    registry.manifest = redirect
    with pytest.raises(error, match=why):
        await pull(host)
