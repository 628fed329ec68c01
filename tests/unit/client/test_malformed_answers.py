"""A server that answers what is not HTTP (another protocol, a bad header line, a bad chunk
size or Content-Length, a body cut short) was reached: every way the client reads an answer
says which request got what, and never 'cannot reach the kukeon API' (what kukectl said
before for the plain requests) or 'unexpected failure: ClientResponseError' (before, for
the aiohttp ones: logs, image import, exec). A server closing without a byte of an answer
is said as that.

The server is a few lines of asyncio on a unix socket answering every request with the
same bytes, then closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Kind
from kukeon.cli.main import main
from kukeon.client.apiclient import ApiClient, ApiRequestError, ServerUnreachable

ROOT = "/apis/kukeon.io/v1beta1"
CELLS = f"{ROOT}/realms/r/spaces/s/stacks/st/cells"
IMAGES = f"{ROOT}/realms/r/images"

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"

# name: (the answer's bytes, what kukectl's own reader says, what aiohttp's says)
GARBAGE: dict[str, tuple[bytes, str, str | None]] = {
    "another protocol": (
        b"SSH-2.0-OpenSSH_9.2\r\n",
        "is not valid HTTP: not an HTTP/1.x answer: 'SSH-2.0-OpenSSH_9.2'",
        "is not valid HTTP: Bad status line: Expected HTTP/, RTSP/ or ICE/: b'SSH-2.0-OpenSSH_9.2'",
    ),
    "a header line without a colon": (
        b"HTTP/1.1 200 OK\r\nContent-Type application/json\r\n\r\n{}",
        "is not valid HTTP: malformed header line 'Content-Type application/json'",
        "is not valid HTTP: Invalid header token: b'Content-Type application/json'",
    ),
    "a bad Content-Length": (
        HEAD + b"Content-Length: abc\r\n\r\n{}",
        "is not valid HTTP: bad Content-Length 'abc'",
        "is not valid HTTP: Invalid character in Content-Length",
    ),
    "a bad chunk size": (
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        "is not valid HTTP: bad chunk size 'zz'",
        "is not valid HTTP: Invalid character in chunk size: b'zz'",
    ),
    "a chunk cut short": (
        HEAD + b'Transfer-Encoding: chunked\r\n\r\n10\r\n{"gitVers',
        "is cut short: the connection closed after 9 of the 16 bytes of a chunk",
        "is cut short: Response payload is not completed",
    ),
    "chunks without the last": (
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
        "is cut short: the connection closed after 2 bytes, before the last chunk",
        "is cut short: Response payload is not completed",
    ),
    "a body cut short": (
        HEAD + b"Content-Length: 100\r\n\r\n{}",
        "is cut short: the connection closed after 2 of the 100 bytes of the body announced",
        "is cut short: Response payload is not completed",
    ),
    "headers cut short": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
        "is cut short: the connection closed before the end of its headers",
        None,
    ),
    "a line past the limit": (
        HEAD + b"X-Long: " + b"x" * (1 << 17) + b"\r\n\r\n{}",
        "is not valid HTTP: a line of its head or chunk framing is longer than 65536 bytes",
        "is not valid HTTP: Got more than 8190 bytes",
    ),
}


class Garbage:
    """A unix-socket server answering every request with ``answer``, then closing."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")  # a request's body, if any, is left unread
            writer.write(self.answer)
            await writer.drain()
        writer.close()


@pytest.fixture
async def garbage(tmp_path: Path) -> AsyncIterator[Callable[[bytes], Awaitable[str]]]:
    """Start a ``Garbage`` server; its address (``unix://...``)."""
    servers: list[asyncio.Server] = []

    async def start(answer: bytes) -> str:
        path = tmp_path / f"api{len(servers)}.sock"
        servers.append(await asyncio.start_unix_server(Garbage(answer).handle, path=str(path)))
        return f"unix://{path}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _plain(client: ApiClient, archive: Path) -> Any:
    return await client.request("GET", "/version")


async def _upload(client: ApiClient, archive: Path) -> Any:
    return await client.upload(IMAGES, archive)


async def _stream(client: ApiClient, archive: Path) -> Any:
    return [chunk async for chunk in client.stream("GET", f"{CELLS}/c/log")]


async def _watch(client: ApiClient, archive: Path) -> Any:
    return [event async for event in client.watch(Kind.CELL, ("r", "s", "st"))]


async def _websocket(client: ApiClient, archive: Path) -> Any:
    async with client.websocket(f"{CELLS}/c/exec"):
        pass


# name: (pooled, the call, the request it names, whose reader: kukectl's own or aiohttp's)
READERS: dict[str, tuple[bool, Callable[[ApiClient, Path], Awaitable[Any]], str, bool]] = {
    "a plain request": (False, _plain, "GET /version", True),
    "a pooled request": (True, _plain, "GET /version", False),
    "an upload": (True, _upload, f"POST {IMAGES}", False),
    "a stream": (True, _stream, f"GET {CELLS}/c/log", False),
    "a watch": (True, _watch, f"GET {CELLS}", False),
    "a WebSocket": (True, _websocket, f"GET {CELLS}/c/exec (a WebSocket upgrade)", False),
}

# Read by aiohttp up to the head only: a body cut short is the stream's or the watch's own
# to say (a server gone mid-stream), and a WebSocket upgrade is a head. Headers cut short
# are aiohttp's ServerDisconnectedError, said as a server gone.
HEAD_ONLY = {"a stream", "a watch", "a WebSocket"}
BODY_CUT = {"a chunk cut short", "chunks without the last", "a body cut short"}


CASES = [
    pytest.param(reader, kind, id=f"{reader}-{kind}")
    for reader, (_, _, _, own) in READERS.items()
    for kind, (_, _, aiohttps) in GARBAGE.items()
    if not (reader in HEAD_ONLY and kind in BODY_CUT) and (own or aiohttps is not None)
]


@pytest.mark.parametrize(("reader", "kind"), CASES)
async def test_an_answer_that_is_not_http_names_the_request(
    garbage: Callable[[bytes], Awaitable[str]], tmp_path: Path, reader: str, kind: str
) -> None:
    answer, ours, aiohttps = GARBAGE[kind]
    pooled, call, request, own = READERS[reader]
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"an archive")
    server = await garbage(answer)
    async with ApiClient(server=server, pooled=pooled, timeout=10) as client:
        with pytest.raises(ApiRequestError) as caught:
            await call(client, archive)
    said = caught.value.message
    assert said.startswith(f"the server's answer to {request} "), said
    expected = ours if own else aiohttps
    assert expected is not None
    assert expected in said, said
    assert "\n" not in said
    assert (caught.value.code, caught.value.reason) == (500, "InternalError")


async def test_a_server_closing_without_an_answer_says_so(
    garbage: Callable[[bytes], Awaitable[str]],
) -> None:
    server = await garbage(b"")
    async with ApiClient(server=server, pooled=False) as client:
        with pytest.raises(ServerUnreachable) as caught:
            await client.version()
    assert str(caught.value) == (
        f"the kukeon API at {server} closed the connection without answering GET /version"
    )


@pytest.mark.parametrize(
    ("argv", "request_line"),
    [
        (["version"], "GET /version"),
        (["get", "cells", "--realm", "r", "--space", "s", "--stack", "st"], f"GET {CELLS}"),
        (["logs", "c", "--realm", "r", "--space", "s", "--stack", "st"], f"GET {CELLS}/c/log"),
        (["image", "import", "ARCHIVE", "--realm", "r"], f"POST {IMAGES}"),
        (
            ["exec", "c", "--realm", "r", "--space", "s", "--stack", "st", "--", "true"],
            f"GET {CELLS}/c/exec (a WebSocket upgrade)",
        ),
    ],
    ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else "",
)
def test_kukectl_says_a_garbage_answer_in_one_line_and_exits_1(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    request_line: str,
) -> None:
    socket = tmp_path / "api.sock"
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{socket}")
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"an archive")
    argv = [str(archive) if arg == "ARCHIVE" else arg for arg in argv]
    bad_header = b"HTTP/1.1 200 OK\r\nContent-Type application/json\r\n\r\n{}"
    with _serving(socket, bad_header), pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    lines = [line for line in err.splitlines() if not line.startswith("Client Version")]
    assert lines == [lines[0]], err  # one line, no traceback
    assert lines[0].startswith(f"error: the server's answer to {request_line} is not valid HTTP")
    assert "cannot reach" not in err
    assert "unexpected failure" not in err


@contextlib.contextmanager
def _serving(socket: Path, answer: bytes) -> Iterator[None]:
    """``Garbage`` on ``socket`` in a thread of its own while the block runs (kukectl's
    ``main`` runs its own event loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    started = asyncio.run_coroutine_threadsafe(
        asyncio.start_unix_server(Garbage(answer).handle, path=str(socket)), loop
    )
    server = started.result(5)
    try:
        yield
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
