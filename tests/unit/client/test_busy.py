"""A 429 waited out and asked again: the policy (``busy``), and every long-running open of
``ApiClient`` (watch, followed stream, upload, WebSocket) against a tiny server that is
busy for a while, or for good; the reflector's reopen after a 429."""

from __future__ import annotations

import asyncio
import email.utils
import json
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.client.apiclient import ApiClient, ApiRequestError, ClientWatchEvent
from kukeon.client.busy import BusyRetry, retry_after_seconds
from kukeon.client.errors import StatusCause
from kukeon.client.reflector import Backoff, follow
from kukeon.client.streams import BUSY_SESSION_MESSAGE

FAST = BusyRetry(retries=5, default_wait=0.01, max_wait=0.01)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        (None, None),
        ("soon", None),
        ("-1", None),
        ("1.5", None),
        ("\u00b2", None),  # a digit to str.isdigit, not to float(): was a ValueError
    ],
)
def test_retry_after_is_delay_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


def test_retry_after_may_be_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds(email.utils.formatdate(now + 3, usegmt=True), now=now) == 3.0
    assert retry_after_seconds(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0


def _busy(message: str = "user 'eddie' already has 2 watches", after: str | None = "1") -> Any:
    return ApiRequestError(429, "TooManyRequests", message, retry_after=after)


async def _recorded_waits(
    monkeypatch: pytest.MonkeyPatch, policy: BusyRetry, attempt: Callable[[], Awaitable[Any]]
) -> tuple[Any, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("kukeon.client.busy.asyncio.sleep", sleep)
    return await policy.call(attempt), waits


async def test_waits_what_the_server_asks_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[Exception | str] = [_busy(after="2"), _busy(after=None), _busy(after="600"), "ok"]

    async def attempt() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result, waits = await _recorded_waits(monkeypatch, BusyRetry(), attempt)
    assert result == "ok"
    assert waits == [2.0, 1.0, 10.0]  # Retry-After; the default without one; the cap


async def test_gives_up_after_the_retries_naming_the_429(monkeypatch: pytest.MonkeyPatch) -> None:
    tries = 0

    async def attempt() -> str:
        nonlocal tries
        tries += 1
        raise _busy()

    with pytest.raises(ApiRequestError) as refused:
        await _recorded_waits(monkeypatch, BusyRetry(), attempt)
    assert tries == 6
    assert refused.value.code == 429
    assert refused.value.message == (
        "the server answered 429 TooManyRequests to 6 tries in 5s: "
        "user 'eddie' already has 2 watches"
    )


async def test_other_failures_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    async def attempt() -> str:
        raise ApiRequestError(403, "Forbidden", "no")

    with pytest.raises(ApiRequestError) as refused:
        await _recorded_waits(monkeypatch, BusyRetry(), attempt)
    assert refused.value.code == 403


@pytest.mark.parametrize("code", [500, 503, 504])
async def test_a_server_error_saying_when_to_ask_again_is_retried(
    monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    # kukectl retried a 429 only; client-go retries any 5xx that carries Retry-After.
    answers: list[Exception | str] = [
        ApiRequestError(code, "ServiceUnavailable", "starting", retry_after="2"),
        ApiRequestError(code, "ServiceUnavailable", "starting", retry_after="1"),
        "ok",
    ]

    async def attempt() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result, waits = await _recorded_waits(monkeypatch, BusyRetry(), attempt)
    assert (result, waits) == ("ok", [2.0, 1.0])


@pytest.mark.parametrize(
    "refusal",
    [
        ApiRequestError(503, "ServiceUnavailable", "etcd is full"),  # says not when: at once
        ApiRequestError(504, "Timeout", "the request did not complete within 30s"),
        ApiRequestError(502, "BadGateway", "proxy", retry_after="soon"),  # unreadable
        ApiRequestError(  # the server waited for that revision already: the caller relists
            504,
            "Timeout",
            "Timeout: Too large resource version: 9, current: 5",
            causes=[StatusCause("resourceVersion", "too large", "ResourceVersionTooLarge")],
            retry_after="1",
        ),
    ],
    ids=["no-retry-after", "deadline", "unreadable", "too-large"],
)
async def test_server_errors_not_saying_when_are_raised_at_once(
    monkeypatch: pytest.MonkeyPatch, refusal: ApiRequestError
) -> None:
    tries = 0

    async def attempt() -> str:
        nonlocal tries
        tries += 1
        raise refusal

    with pytest.raises(ApiRequestError) as raised:
        await _recorded_waits(monkeypatch, BusyRetry(), attempt)
    assert raised.value is refusal
    assert tries == 1


async def test_a_server_error_for_good_says_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    async def attempt() -> str:
        raise ApiRequestError(503, "ServiceUnavailable", "down for upgrade", retry_after="3")

    with pytest.raises(ApiRequestError) as refused:
        await _recorded_waits(monkeypatch, BusyRetry(), attempt)
    assert refused.value.code == 503
    assert refused.value.message == (
        "the server answered 503 ServiceUnavailable to 6 tries in 15s: down for upgrade"
    )


# --- the client's long-running opens, against a server busy for ``busy_for`` answers -----


class BusyServer:
    def __init__(self, busy_for: int, code: int = 429) -> None:
        self.busy_for = busy_for
        self.code = code
        self.asked = 0

    def refused(self) -> web.Response | None:
        self.asked += 1
        if self.asked > self.busy_for:
            return None
        status = {
            "kind": "Status",
            "status": "Failure",
            "code": self.code,
            "reason": "TooManyRequests" if self.code == 429 else "ServiceUnavailable",
            "message": "user 'eddie' already has 2 watches, followed logs or sessions open",
        }
        return web.json_response(status, status=self.code, headers={"Retry-After": "1"})

    async def plain(self, request: web.Request) -> web.StreamResponse:
        return self.refused() or web.json_response({"ok": True})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self.refused()) is not None:
            return refusal
        response = web.StreamResponse()
        await response.prepare(request)
        realm = {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": "a", "resourceVersion": "5"},
        }
        await response.write(json.dumps({"type": "ADDED", "object": realm}).encode() + b"\n")
        return response

    async def upload(self, request: web.Request) -> web.StreamResponse:
        total = len(await request.read())
        return self.refused() or web.json_response({"bytes": total})

    async def session(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self.refused()) is not None:
            return refusal
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"\x01hello")
        await ws.close()
        return ws


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[BusyServer], Awaitable[str]]]:
    runners: list[web.AppRunner] = []
    directory = Path(tempfile.mkdtemp(prefix="kukeon-busy-"))

    async def start(server: BusyServer) -> str:
        app = web.Application()
        app.router.add_get("/apis/kukeon.io/v1beta1/realms", server.watch)
        app.router.add_get("/log", server.watch)
        app.router.add_post("/upload", server.upload)
        app.router.add_get("/exec", server.session)
        app.router.add_get("/plain", server.plain)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        path = directory / f"{len(runners)}.sock"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        await web.SockSite(runner, sock).start()
        return f"unix://{path}"

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()
        await asyncio.to_thread(shutil.rmtree, directory, True)


OPENS = ["watch", "stream", "upload", "websocket"]


async def _open(client: ApiClient, tmp_path: Path, what: str) -> Any:
    """What one kind of long-running open gives."""
    if what == "watch":
        return [event.type async for event in client.watch(Kind.REALM)]
    if what == "stream":
        return b"".join([chunk async for chunk in client.stream("GET", "/log")]).count(b"ADDED")
    if what == "upload":
        archive = tmp_path / "image.tar"
        archive.write_bytes(b"x" * 1000)
        return await client.upload("/upload", archive)
    async with client.websocket("/exec") as ws:
        return (await ws.receive()).data


@pytest.mark.parametrize("what", OPENS)
async def test_a_long_running_open_waits_out_a_429(
    serve: Callable[[BusyServer], Awaitable[str]], tmp_path: Path, what: str
) -> None:
    server = BusyServer(busy_for=5)  # the fifth retry gets in
    async with ApiClient(server=await serve(server)) as client:
        client.busy = FAST
        opened = await _open(client, tmp_path, what)
    expected = {"watch": ["ADDED"], "stream": 1, "upload": {"bytes": 1000}}
    assert opened == expected.get(what, b"\x01hello")
    assert server.asked == 6


@pytest.mark.parametrize("what", OPENS)
async def test_a_long_running_open_busy_for_good_says_429(
    serve: Callable[[BusyServer], Awaitable[str]], tmp_path: Path, what: str
) -> None:
    server = BusyServer(busy_for=1000)
    async with ApiClient(server=await serve(server)) as client:
        client.busy = FAST
        with pytest.raises(ApiRequestError) as refused:
            await _open(client, tmp_path, what)
    assert server.asked == 6
    assert refused.value.code == 429
    assert refused.value.message.startswith("the server answered 429 TooManyRequests to 6 tries")
    # The server's words; aiohttp does not keep a refused WebSocket upgrade's body.
    words = BUSY_SESSION_MESSAGE if what == "websocket" else "user 'eddie' already has 2"
    assert words in refused.value.message


@pytest.mark.parametrize("what", [*OPENS, "request"])
async def test_a_503_with_retry_after_is_waited_out_as_a_429(
    serve: Callable[[BusyServer], Awaitable[str]], tmp_path: Path, what: str
) -> None:
    server = BusyServer(busy_for=3, code=503)
    async with ApiClient(server=await serve(server)) as client:
        client.busy = FAST
        if what == "request":
            opened = await client.request("GET", "/plain")
        else:
            opened = await _open(client, tmp_path, what)
    expected = {"watch": ["ADDED"], "stream": 1, "upload": {"bytes": 1000}, "request": {"ok": True}}
    assert opened == expected.get(what, b"\x01hello")
    assert server.asked == 4


async def test_an_awaited_websocket_waits_out_a_429_too(
    serve: Callable[[BusyServer], Awaitable[str]],
) -> None:
    server = BusyServer(busy_for=2)
    async with ApiClient(server=await serve(server)) as client:
        client.busy = FAST
        ws = await client.websocket("/exec")
        assert (await ws.receive()).data == b"\x01hello"
        await ws.close()


# --- the reflector: a first open's 429 is the caller's, a reopen's is waited out ------------


def _realm(name: str, rv: int) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": name, "resourceVersion": str(rv)},
        }
    )


class Reopens:
    """A watch that delivers ``a``, ends, is refused ``busy`` reopens with 429, then ``b``."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.opens = 0

    async def watch(self, kind: Kind, *_: Any, **__: Any) -> AsyncIterator[ClientWatchEvent]:
        self.opens += 1
        if self.opens == 1:
            yield ClientWatchEvent("ADDED", _realm("a", 5), 5)
            return
        if self.opens <= 1 + self.busy:
            raise _busy()
        yield ClientWatchEvent("ADDED", _realm("b", 6), 6)
        await asyncio.sleep(3600)


async def test_a_reopen_refused_429_is_waited_out_and_told_once() -> None:
    script = Reopens(busy=4)
    notes: list[str] = []
    seen: list[str] = []
    stream = follow(
        script,  # type: ignore[arg-type]
        Kind.REALM,
        backoff=Backoff(initial=0.01, maximum=0.02),
        notify=notes.append,
        initial_revision=4,
    )
    async with asyncio.timeout(5):
        async for event in stream:
            assert event.object is not None
            seen.append(event.object.metadata.name)
            if len(seen) == 2:
                break
    assert seen == ["a", "b"]
    assert script.opens == 6
    assert len(notes) == 1
    assert "the server answered 429" in notes[0]
    assert "already has 2 watches" in notes[0]


async def test_a_first_open_refused_429_is_the_callers_error() -> None:
    class Busy(Reopens):
        async def watch(self, kind: Kind, *_: Any, **__: Any) -> AsyncIterator[ClientWatchEvent]:
            self.opens += 1
            raise _busy()
            yield  # an async generator, as ApiClient.watch

    script = Busy(busy=0)
    with pytest.raises(ApiRequestError) as refused:
        async for _ in follow(script, Kind.REALM, initial_revision=4):  # type: ignore[arg-type]
            pass
    assert refused.value.code == 429
    assert script.opens == 1
