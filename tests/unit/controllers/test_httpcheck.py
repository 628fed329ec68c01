"""The probes' HTTP GET against raw loopback servers: what it sends, what it reads, and
how it fails on a peer that does not speak HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from kukeon.api.probes import Probe
from kukeon.controllers.httpcheck import (
    HttpReply,
    HttpReplyError,
    HttpTarget,
    http_get,
    redirect_target,
    request_bytes,
)
from kukeon.controllers.probers import CheckResult, Prober, ProbeTarget
from kukeon.runtime.containerd import ContainerdClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def test_the_request_names_the_target_and_closes_the_connection() -> None:
    sent = request_bytes("10.0.0.2", 8080, "/ready?x=1 ü", [("user-agent", "mine"), ("X-A", "b")])
    lines = sent.decode("latin-1").split("\r\n")
    assert lines[0] == "GET /ready?x=1%20%C3%BC HTTP/1.1"
    assert "Host: 10.0.0.2:8080" in lines
    assert "user-agent: mine" in lines  # the probe's header replaces the default
    assert not any(line.startswith("User-Agent: kukeon") for line in lines)
    assert "X-A: b" in lines
    assert "Connection: close" in lines
    assert sent.endswith(b"\r\n\r\n")


async def test_status_and_capped_body() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        await writer.drain()
        writer.close()

    async for port in serve(handler):
        status, body, _ = await http_get("127.0.0.1", port, "/h", [("X-Probe", "1")], limit=100)
    assert status == 503
    assert body == b"x" * 100
    assert b"X-Probe: 1" in seen[0]


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP reply"),
        (b"", "closed without a reply"),
        (b"HTTP/1.1 abc\r\n\r\n", "not an HTTP reply"),
    ],
)
async def test_a_peer_that_is_not_http_is_refused(reply: bytes, words: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    async for port in serve(handler):
        with pytest.raises(HttpReplyError, match=words):
            await http_get("127.0.0.1", port, "/")


# --- redirects, as kubelet follows them -------------------------------------------------


def redirects_to(location: str, seen: list[bytes]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        seen.append(request.split(b"\r\n", 1)[0])
        if request.startswith(b"GET /end "):
            writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 6\r\n\r\nbroken")
        elif request.startswith((b"GET /fine ", b"GET /fine?")):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        else:
            reply = f"HTTP/1.1 302 Found\r\nlocation:  {location}\r\nContent-Length: 0\r\n\r\n"
            writer.write(reply.encode())
        await writer.drain()
        writer.close()

    return handler


async def check_http(port: int, path: str = "/start") -> CheckResult:
    prober = Prober(cast(ContainerdClient, None))
    probe = Probe.model_validate({"httpGet": {"port": port, "path": path}, "timeoutSeconds": 5})
    target = ProbeTarget(namespace="ns", container_id="c", address="127.0.0.1", fifo_root=Path())
    return await prober.check(probe, target)


async def test_a_redirect_to_the_cells_own_address_is_followed() -> None:
    """kubelet follows a redirect to the same host (the reply at its end decides): a
    302 to a path that answers 500 fails; it passed, the 302 taken for the answer."""
    seen: list[bytes] = []
    async for port in serve(redirects_to("/end", seen)):
        result = await check_http(port)
    assert not result.success
    assert result.message == f"GET http://127.0.0.1:{port}/end: HTTP 500: broken"
    assert seen == [b"GET /start HTTP/1.1", b"GET /end HTTP/1.1"]


async def test_a_redirect_to_another_port_of_the_same_host_is_followed() -> None:
    seen: list[bytes] = []
    async for other in serve(redirects_to("", seen)):
        async for port in serve(redirects_to(f"http://127.0.0.1:{other}/fine?x=1", seen)):
            result = await check_http(port)
    assert result.success
    assert result.warning is None  # followed to its end: a plain success
    assert seen == [b"GET /start HTTP/1.1", b"GET /fine?x=1 HTTP/1.1"]


async def test_a_redirect_to_another_host_is_not_followed_and_passes() -> None:
    """As kubelet: a redirect off the cell's address ends the check with its 3xx, a
    success, and nothing is asked of that host."""
    seen: list[bytes] = []
    async for port in serve(redirects_to("http://192.0.2.1:9/end", seen)):
        result = await check_http(port)
    assert result.success
    assert seen == [b"GET /start HTTP/1.1"]
    # kubelet's probe.Warning ("Probe terminated redirects"): a success to report.
    assert result.warning == (
        f"probe terminated redirects: GET http://127.0.0.1:{port}/start: "
        "HTTP 302 to http://192.0.2.1:9/end, not followed"
    )


async def test_a_redirect_without_a_location_passes_with_a_warning() -> None:
    async for port in serve(redirects_to("", [])):
        result = await check_http(port)
    assert result.success
    assert result.warning is not None
    assert result.warning.endswith("/start: HTTP 302 without a Location, not followed")


async def test_a_redirect_loop_fails_after_ten() -> None:
    seen: list[bytes] = []
    async for port in serve(redirects_to("/again", seen)):
        result = await check_http(port)
    assert not result.success
    assert result.message == f"GET http://127.0.0.1:{port}/again: stopped after 10 redirects"
    assert len(seen) == 11


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/b?q=1", HttpTarget("http", 8080, "/b?q=1")),
        ("c", HttpTarget("http", 8080, "/a/c")),
        ("https://10.0.0.2/s", HttpTarget("https", 443, "/s")),
        ("//10.0.0.2:81", HttpTarget("http", 81, "/")),
        ("http://10.0.0.3/", None),
        ("ftp://10.0.0.2/", None),
        ("", None),
    ],
)
def test_where_a_redirect_leads(location: str, expected: HttpTarget | None) -> None:
    reply = HttpReply(302, b"", location or None)
    assert redirect_target(reply, "10.0.0.2", HttpTarget("http", 8080, "/a/b")) == expected


def test_a_redirect_to_no_url_is_refused() -> None:
    reply = HttpReply(301, b"", "http://10.0.0.2:99999/")
    with pytest.raises(HttpReplyError, match="invalid location"):
        redirect_target(reply, "10.0.0.2", HttpTarget("http", 80, "/"))
    assert (
        redirect_target(HttpReply(200, b"", "/x"), "10.0.0.2", HttpTarget("http", 80, "/")) is None
    )
