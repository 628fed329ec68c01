"""``Expect`` on a request: ``100 Continue`` only once a handler reads the body, a Status 417
for any other expectation, and never aiohttp's own answers (a 100 before the 413 that
refuses the body, a plain-text 417).

Served as kukeond serves it (``StatusAppRunner`` on a unix socket: the local admin), and
spoken to in raw HTTP/1.1, which shows every interim answer a client gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.apiserver import ApiSettings, create_app
from tests.fixtures.rawhttp import closed, expectation_failed, read_answer, send_head
from tests.unit.apiserver.statusserver import serving
from tests.unit.apiserver.test_app import FakeRegistry, V

LIMIT = 2048
REALM = b'{"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "x"}}'


@pytest.fixture
async def socket_path(tmp_path: Path) -> AsyncIterator[Path]:
    settings = ApiSettings(socket_path=None, request_timeout=5, max_body_bytes=LIMIT)
    app = create_app(registry=FakeRegistry(), settings=settings)
    async with serving(app, tmp_path / "api.sock") as path:
        yield path


async def _head(
    path: Path, method: str, target: str, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    connection = await asyncio.open_unix_connection(str(path))
    return await send_head(connection, method, target, headers)


async def test_a_body_over_the_limit_is_refused_without_a_100(socket_path: Path) -> None:
    # aiohttp sent '100 Continue' first: the client sent its 10 MB to be refused unread.
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(10 * 1024 * 1024),
        "Expect": "100-continue",
    }
    reader, writer = await _head(socket_path, "POST", f"{V}/realms", headers)
    status, answer_headers, status_object = await read_answer(reader)
    assert status.startswith("HTTP/1.1 413"), status
    assert status_object["kind"] == "Status"
    assert f"larger than the limit of {LIMIT} bytes" in status_object["message"]
    assert answer_headers.get("connection", "").lower() == "close"
    assert await closed(reader)  # closed: no body awaited
    writer.close()


async def test_a_body_within_the_limit_gets_its_100_then_the_answer(socket_path: Path) -> None:
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(REALM)),
        "Expect": "100-continue",
    }
    reader, writer = await _head(socket_path, "POST", f"{V}/realms", headers)
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(REALM)
    await writer.drain()
    status, _, created = await read_answer(reader)
    assert status.startswith("HTTP/1.1 201"), (status, created)
    assert created["metadata"]["name"] == "x"
    writer.close()


@pytest.mark.parametrize("path", [f"{V}/realms", "/no/such/path"])
async def test_an_unknown_expectation_is_a_417_status(socket_path: Path, path: str) -> None:
    # aiohttp answered 'Unknown Expect: x-magic' in plain text, before any middleware.
    headers = {"Content-Type": "application/json", "Content-Length": "2", "Expect": "x-magic"}
    status_object = await expectation_failed(await _head(socket_path, "POST", path, headers))
    assert "'x-magic'" in status_object["message"]


async def test_an_answer_that_reads_no_body_closes_the_connection(socket_path: Path) -> None:
    # A 404 (and any answer given without reading the body) comes without the 100; the
    # client may or may not send its body after it, so the connection is closed.
    headers = {"Content-Type": "application/json", "Content-Length": "5", "Expect": "100-continue"}
    reader, writer = await _head(socket_path, "POST", "/no/such/path", headers)
    status, answer_headers, status_object = await read_answer(reader)
    assert status.startswith("HTTP/1.1 404"), status
    assert status_object["kind"] == "Status"
    assert answer_headers.get("connection", "").lower() == "close"
    assert await closed(reader)
    writer.close()
