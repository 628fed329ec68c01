"""kukectl's plain requests (``ApiClient(pooled=False)``) over a connection of their own,
against a canned HTTP server on a unix socket: bodies of every framing, errors, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.client import httpexchange
from kukeon.client.apiclient import ApiClient, ApiRequestError, ServerUnreachable
from kukeon.client.httpexchange import encode_request


class Canned:
    """A unix-socket server answering every request with ``answer`` (raw bytes)."""

    def __init__(self, answer: bytes, *, delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        self.requests.append(head + await reader.readexactly(length))
        await asyncio.sleep(self.delay)
        writer.write(self.answer)
        await writer.drain()
        writer.close()


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[tuple[Path, list[asyncio.Server]]]:
    servers: list[asyncio.Server] = []
    yield tmp_path / "api.sock", servers
    for server in servers:
        server.close()
        await server.wait_closed()


async def _client_with(
    serve: tuple[Path, list[asyncio.Server]], canned: Canned, limit: float = 5.0
) -> ApiClient:
    path, servers = serve
    servers.append(await asyncio.start_unix_server(canned.handle, path=str(path)))
    return ApiClient(server=f"unix://{path}", token="t0ken", timeout=limit, pooled=False)


def _json_answer(document: object, *, status: str = "200 OK", chunked: bool = False) -> bytes:
    body = json.dumps(document).encode()
    if chunked:
        framed = b"".join(
            b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]) if part
        )
        return (
            (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + framed
            + b"0\r\n\r\n"
        )
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_json_answer_is_read_whole(
    serve: tuple[Path, list[asyncio.Server]], chunked: bool
) -> None:
    canned = Canned(_json_answer({"gitVersion": "1.2.3"}, chunked=chunked))
    async with await _client_with(serve, canned) as client:
        assert await client.version() == {"gitVersion": "1.2.3"}
    sent = canned.requests[0].decode()
    assert sent.startswith("GET /version HTTP/1.1\r\n")
    assert "Authorization: Bearer t0ken\r\n" in sent
    assert "Connection: close\r\n" in sent


async def test_a_body_and_query_are_sent(serve: tuple[Path, list[asyncio.Server]]) -> None:
    canned = Canned(_json_answer({"ok": True}))
    async with await _client_with(serve, canned) as client:
        await client.request("POST", "/x", params={"labelSelector": "a in (b,c)"}, body={"k": 1})
    head, _, body = canned.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /x?labelSelector=a%20in%20%28b%2Cc%29 HTTP/1.1")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"k": 1}


async def test_a_failure_status_is_an_api_error(serve: tuple[Path, list[asyncio.Server]]) -> None:
    status = {"kind": "Status", "code": 404, "reason": "NotFound", "message": "cell x not found"}
    canned = Canned(_json_answer(status, status="404 Not Found"))
    async with await _client_with(serve, canned) as client:
        with pytest.raises(ApiRequestError) as caught:
            await client.request("GET", "/x")
    assert (caught.value.code, caught.value.reason) == (404, "NotFound")


async def test_a_missing_socket_is_unreachable(tmp_path: Path) -> None:
    async with ApiClient(server=f"unix://{tmp_path}/none.sock", pooled=False) as client:
        with pytest.raises(ServerUnreachable, match=r"^cannot reach the kukeon API at unix://"):
            await client.version()


async def test_a_slow_server_is_a_timeout(serve: tuple[Path, list[asyncio.Server]]) -> None:
    canned = Canned(_json_answer({}), delay=2.0)
    async with await _client_with(serve, canned, limit=0.2) as client:
        with pytest.raises(ServerUnreachable, match=r"did not answer within 0\.2s"):
            await client.version()


def test_a_request_without_a_body_has_no_length() -> None:
    sent = encode_request("GET", "/a", host="kukeond", headers={}, body=None)
    assert sent == b"GET /a HTTP/1.1\r\nHost: kukeond\r\nConnection: close\r\n\r\n"


class Endless(Canned):
    """Answers with ``head`` and then a body that never ends (``piece`` again and again)."""

    def __init__(self, head: bytes, piece: bytes) -> None:
        super().__init__(head)
        self.piece = piece
        self.sent = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.answer)
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(self.piece)
                self.sent += len(self.piece)
                await writer.drain()
        writer.close()


LIMIT = 4 << 20


@pytest.mark.parametrize(
    ("head", "piece"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", b"x" * 65536),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"10000\r\n" + b"x" * 65536 + b"\r\n",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\n", b"x" * 65536),
    ],
    ids=["until closed", "chunked", "announced"],
)
async def test_an_endless_answer_is_refused_past_the_bound(
    serve: tuple[Path, list[asyncio.Server]],
    monkeypatch: pytest.MonkeyPatch,
    head: bytes,
    piece: bytes,
) -> None:
    # A hostile server's endless body took all of kukectl's memory (2.9 GB in 20 s).
    monkeypatch.setattr(httpexchange, "MAX_ANSWER_BYTES", LIMIT)
    endless = Endless(head, piece)
    async with await _client_with(serve, endless, limit=30) as client:
        with pytest.raises(ApiRequestError) as refused:
            await client.version()
    assert endless.sent < 4 * LIMIT
    # The server was reached: not 'cannot reach the kukeon API at ...' (what it said before).
    assert refused.value.message == (
        "the server's answer to GET /version is larger than 4 MiB, the most kukectl reads "
        "(no answer of the kukeon API is that large); not read further"
    )


async def test_a_failure_nested_past_pythons_stack_is_an_api_error(
    serve: tuple[Path, list[asyncio.Server]],
) -> None:
    # json.loads' RecursionError escaped: 'unexpected failure: RecursionError'.
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % len(deep) + deep
    async with await _client_with(serve, Canned(answer)) as client:
        with pytest.raises(ApiRequestError) as caught:
            await client.version()
    assert caught.value.code == 500
