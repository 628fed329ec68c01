"""kukectl ui's forward: the page for anyone, the API only with the run's token (dropped
before kukeond sees the request), never for a foreign Host or Origin, streams passed on as
they come, ``Expect`` answered as kukeond's API does (``kukeon.httpexpect``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from kukeon.ui.forward import MAX_BODY_BYTES, SHUTDOWN_SECONDS, ConsoleForward, is_public_path
from tests.fixtures.interpreter import printed_after
from tests.fixtures.rawhttp import closed, expectation_failed, read_answer, send_head


@pytest_asyncio.fixture
async def forward(tmp_path: Path) -> AsyncIterator[ConsoleForward]:
    seen: list[dict[str, str | None]] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append({"auth": request.headers.get("Authorization"), "path": request.path_qs})
        if request.query.get("hang"):
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"open\n")
            await asyncio.sleep(3600)  # a watch that sees nothing for an hour
        if request.query.get("follow"):
            response = web.StreamResponse()
            await response.prepare(request)
            for number in range(3):
                await response.write(f"line {number}\n".encode())
                await asyncio.sleep(0.05)
            return response
        body = await request.read()
        return web.json_response(
            {"method": request.method, "type": request.content_type, "body": body.decode()}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    socket_path = tmp_path / "kukeond.sock"
    await web.UnixSite(runner, str(socket_path)).start()
    forward = ConsoleForward(socket_path=socket_path)
    await forward.start()
    forward.seen = seen  # type: ignore[attr-defined]
    try:
        yield forward
    finally:
        await forward.close()
        await runner.cleanup()


def test_public_paths() -> None:
    assert is_public_path("/ui/")
    assert is_public_path("/ui/static/js/main.js")
    assert not is_public_path("/ui/whoami")
    assert not is_public_path("/apis/kukeon.io/v1beta1/cells")
    assert not is_public_path("/ui/static/../../apis/kukeon.io/v1beta1/cells")
    assert not is_public_path("/ui/static/./js/main.js")


async def test_token_is_required_checked_and_dropped(forward: ConsoleForward) -> None:
    base = f"http://127.0.0.1:{forward.port}"
    assert forward.url == f"{base}/ui/#token={forward.token}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/ui/") as page:
            assert page.status == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with session.get(f"{base}/apis/x", headers=headers) as refused:
                assert refused.status == 401
                assert "token" in (await refused.json())["message"]
        good = {"Authorization": f"Bearer {forward.token}"}
        patch = {**good, "Content-Type": "application/merge-patch+json"}
        async with session.patch(f"{base}/apis/x?dryRun=All", data=b'{"a":1}', headers=patch) as ok:
            assert ok.status == 200
            assert await ok.json() == {
                "method": "PATCH",
                "type": "application/merge-patch+json",
                "body": '{"a":1}',
            }
        async with session.get(
            f"{base}/ui/whoami", headers={**good, "Host": "evil.example:80"}
        ) as foreign:
            assert foreign.status == 403
    seen = forward.seen  # type: ignore[attr-defined]
    assert [entry["path"] for entry in seen] == ["/ui/", "/apis/x?dryRun=All"]
    assert all(entry["auth"] is None for entry in seen)  # kukeond never sees the token


async def test_streams_are_passed_on(forward: ConsoleForward) -> None:
    headers = {"Authorization": f"Bearer {forward.token}"}
    url = f"http://127.0.0.1:{forward.port}/apis/log?follow=true"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        first = await response.content.readline()
        assert first == b"line 0\n"
        rest = await response.content.read()
    assert rest == b"line 1\nline 2\n"


async def test_socket_gone_is_502(tmp_path: Path) -> None:
    forward = ConsoleForward(socket_path=tmp_path / "absent.sock")
    await forward.start()
    try:
        headers = {"Authorization": f"Bearer {forward.token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{forward.port}/apis", headers=headers) as answer,
        ):
            assert answer.status == 502
    finally:
        await forward.close()


async def test_close_ends_open_streams_at_once(forward: ConsoleForward) -> None:
    headers = {"Authorization": f"Bearer {forward.token}"}
    url = f"http://127.0.0.1:{forward.port}/apis/watch?hang=1"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert await response.content.readline() == b"open\n"
        started = asyncio.get_running_loop().time()
        await forward.close()  # kukectl ui's Ctrl-C with a watch open
        # No shutdown timeout waited out (it was, twice: 4 s on every Ctrl-C).
        assert asyncio.get_running_loop().time() - started < SHUTDOWN_SECONDS


async def test_a_token_that_is_no_utf_8_is_401(forward: ConsoleForward) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", forward.port)
    try:
        writer.write(
            f"GET /apis/x HTTP/1.1\r\nHost: 127.0.0.1:{forward.port}\r\n".encode()
            + b"Authorization: Bearer \xff\xfe\r\n\r\n"
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert head.split(b" ", 2)[1] == b"401", head


async def test_a_public_path_with_dot_segments_is_not_an_api_request_without_the_token(
    forward: ConsoleForward,
) -> None:
    """``/ui/static/../../apis/...`` looked like a static file to the token check, and the
    relay's client resolved the dot segments: any local user read and wrote everything as
    kukeond's local admin through the forward without the token."""
    codes = {}
    for path in (
        "/ui/static/../../apis/kukeon.io/v1beta1/realms",
        "/ui/static/%2e%2e/%2E%2E/apis/kukeon.io/v1beta1/realms",
        "/ui/static/.%2e/.%2e/ui/whoami",
        "/ui/../apis/x",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", forward.port)
        try:
            writer.write(
                f"DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1:{forward.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            async with asyncio.timeout(5):
                codes[path] = (await reader.read()).split(b" ", 2)[1]
        finally:
            writer.close()
    assert all(code == b"401" for code in codes.values()), codes
    assert forward.seen == []  # type: ignore[attr-defined]


async def _forward_head(
    forward: ConsoleForward, method: str, target: str, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    connection = await asyncio.open_connection("127.0.0.1", forward.port)
    return await send_head(connection, method, target, headers, host=f"127.0.0.1:{forward.port}")


async def test_a_body_over_the_limit_is_a_413_without_a_100(forward: ConsoleForward) -> None:
    # aiohttp sent '100 Continue' first and then read the body up to the limit.
    headers = {
        "Authorization": f"Bearer {forward.token}",
        "Content-Type": "application/json",
        "Content-Length": str(MAX_BODY_BYTES + 1),
        "Expect": "100-continue",
    }
    reader, writer = await _forward_head(forward, "POST", "/apis/x", headers)
    try:
        status, _, status_object = await read_answer(reader)
        assert status.startswith("HTTP/1.1 413"), status
        assert status_object["kind"] == "Status"
        assert await closed(reader)
    finally:
        writer.close()
    assert forward.seen == []  # type: ignore[attr-defined]


async def test_a_body_within_the_limit_gets_its_100_and_is_relayed(
    forward: ConsoleForward,
) -> None:
    headers = {
        "Authorization": f"Bearer {forward.token}",
        "Content-Type": "application/json",
        "Content-Length": "7",
        "Expect": "100-continue",
    }
    reader, writer = await _forward_head(forward, "POST", "/apis/x", headers)
    try:
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b'{"a":1}')
        status, _, echoed = await read_answer(reader)
    finally:
        writer.close()
    assert status.startswith("HTTP/1.1 200"), status
    assert echoed == {"method": "POST", "type": "application/json", "body": '{"a":1}'}


async def test_a_request_refused_unread_gets_no_100(forward: ConsoleForward) -> None:
    headers = {"Content-Length": "7", "Expect": "100-continue"}  # no token
    reader, writer = await _forward_head(forward, "POST", "/apis/x", headers)
    try:
        status, _, _ = await read_answer(reader)
        assert status.startswith("HTTP/1.1 401"), status
        assert await closed(reader)
    finally:
        writer.close()


async def test_an_unknown_expectation_is_a_417_status(forward: ConsoleForward) -> None:
    # aiohttp answered 'Unknown Expect: x-magic' in plain text.
    headers = {"Authorization": f"Bearer {forward.token}", "Expect": "x-magic"}
    status_object = await expectation_failed(
        await _forward_head(forward, "GET", "/apis/x", headers)
    )
    assert "'x-magic'" in status_object["message"]
    assert forward.seen == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
async def test_a_foreign_origin_is_a_403_token_or_not(forward: ConsoleForward, origin: str) -> None:
    base = f"http://127.0.0.1:{forward.port}"
    good = {"Authorization": f"Bearer {forward.token}", "Origin": origin}
    async with aiohttp.ClientSession() as session:
        for method, path in (("POST", "/ui/"), ("POST", "/apis/x"), ("GET", "/ui/whoami")):
            async with session.request(method, f"{base}{path}", headers=good) as refused:
                assert refused.status == 403
                status = await refused.json()
                assert status["kind"] == "Status"
                assert "web page" in status["message"]
    assert forward.seen == []  # type: ignore[attr-defined]


async def test_the_forwards_own_origin_or_none_passes(forward: ConsoleForward) -> None:
    token = {"Authorization": f"Bearer {forward.token}"}
    async with aiohttp.ClientSession() as session:
        for host in ("127.0.0.1", "localhost"):
            base = f"http://{host}:{forward.port}"
            for origin in ({"Origin": base}, {}):
                async with session.post(f"{base}/apis/x", headers={**token, **origin}) as ok:
                    assert ok.status == 200
    assert len(forward.seen) == 4  # type: ignore[attr-defined]


def test_the_forward_loads_nothing_of_the_server() -> None:
    """kukectl ui imports the forward: Expect's handling is shared with kukeond's listeners
    (``kukeon.httpexpect``) without the API server, the store or prometheus coming along."""
    server_side = ("aetcd", "grpc", "prometheus_client", "kukeon.apiserver", "kukeon.store")
    loaded = printed_after(
        "import kukeon.ui.forward\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({server_side!r}))))"
    )
    assert loaded == []
