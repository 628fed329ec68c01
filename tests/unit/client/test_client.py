"""The client's raw transports (stream, upload) and Status decoding, against a tiny app."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kukeon.client.apiclient import ApiClient, ApiRequestError, ServerUnreachable


async def _chunks(_: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(_)
    for index in range(3):
        await response.write(f"line {index}\n".encode())
    return response


async def _echo_size(request: web.Request) -> web.StreamResponse:
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    return web.json_response({"bytes": total, "type": request.content_type})


async def _refuse(_: web.Request) -> web.StreamResponse:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": 422,
        "reason": "Invalid",
        "message": "bad",
        "details": {"causes": [{"field": "spec.x", "message": "unknown field"}]},
    }
    return web.json_response(status, status=422)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/chunks", _chunks)
    app.router.add_post("/upload", _echo_size)
    app.router.add_get("/refuse", _refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    directory = Path(tempfile.mkdtemp(prefix="kukeon-client-"))
    path = directory / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    await web.SockSite(runner, sock).start()
    try:
        yield f"unix://{path}"
    finally:
        await runner.cleanup()
        await asyncio.to_thread(shutil.rmtree, directory, True)


async def test_stream_and_upload(server: str, tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"x" * 300_000)
    async with ApiClient(server=server) as client:
        body = b"".join([chunk async for chunk in client.stream("GET", "/chunks")])
        assert body == b"line 0\nline 1\nline 2\n"
        answer = await client.upload("/upload", archive)
        assert answer == {"bytes": 300_000, "type": "application/octet-stream"}
        with pytest.raises(ApiRequestError) as refused:
            await client.request("GET", "/refuse")
        assert refused.value.code == 422
        assert refused.value.causes[0].field == "spec.x"
        with pytest.raises(ApiRequestError) as streamed:
            async for _ in client.stream("GET", "/refuse"):
                pass
        assert streamed.value.reason == "Invalid"


async def test_spec_writes_send_no_status(tmp_path: Path) -> None:
    """A create's or an update's body carries no status: the server keeps its own, and a
    server of another version may not know every status field of this client's models."""
    from kukeon.api import Realm

    bodies: list[dict[str, object]] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        bodies.append(body)
        return web.json_response(body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "e.sock"))
    await web.SockSite(runner, sock).start()
    try:
        realm = Realm.model_validate({"metadata": {"name": "r"}, "status": {"state": "Ready"}})
        async with ApiClient(server=f"unix://{tmp_path / 'e.sock'}") as client:
            await client.create(realm)
            await client.update(realm)
    finally:
        await runner.cleanup()
    assert [sorted(body) for body in bodies] == [["apiVersion", "kind", "metadata", "spec"]] * 2


async def test_unreachable(tmp_path: Path) -> None:
    async with ApiClient(server=f"unix://{tmp_path}/none.sock") as client:
        with pytest.raises(ServerUnreachable, match=r"none\.sock"):
            await client.version()


CELL = ["--realm", "r", "--space", "s", "--stack", "st"]


@pytest.mark.parametrize(
    "argv",
    [["exec", "c", *CELL, "--", "true"], ["cp", "c:/etc/hostname", "x"]],
    ids=["exec", "cp"],  # attach alike (by hand: it reads the terminal, pytest's is none)
)
def test_a_session_with_no_server_is_unreachable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    """A WebSocket's open with no server: 'cannot reach the kukeon API at ...', as a
    request's; it was 'unexpected failure: UnixClientConnectorError: ...'."""
    from kukeon.cli.main import main

    address = f"unix://{tmp_path}/none.sock"
    monkeypatch.setenv("KUKEON_SERVER", address)
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.chdir(tmp_path)
    argv = [*argv, *CELL] if argv[0] == "cp" else argv
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    assert err.startswith(f"error: cannot reach the kukeon API at {address}: "), err
    assert len(err.strip().splitlines()) == 1, err
    # cp's unpacking thread ended with the session, not after kukectl's loop closed (it
    # then raised 'Event loop is closed' in the thread, printed at kukectl's exit).
    assert not [t for t in threading.enumerate() if t.name == "kukectl-cp-unpack"]


def test_status_fields_of_a_newer_server_are_left_out_spec_fields_are_not() -> None:
    from kukeon.api import Cell
    from kukeon.client.apiclient import parse_object

    document: dict[str, Any] = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "c"},
        "spec": {"containers": [{"id": "main", "image": "busybox"}]},
        "status": {
            "state": "Ready",
            "fromTheFuture": {"a": 1},
            "containers": [{"id": "main", "state": "Ready", "newCounter": 3}],
        },
    }
    cell = parse_object(document)
    assert isinstance(cell, Cell)
    assert (cell.status.state, cell.status.containers[0].id) == ("Ready", "main")
    assert "fromTheFuture" in document["status"]  # the caller's document is left alone

    newer_spec = {**document, "spec": {**document["spec"], "fromTheFuture": True}}
    with pytest.raises(ApiRequestError) as refused:
        parse_object(newer_spec)  # a write-back would drop it: better refused than lost
    assert refused.value.code == 500
    assert "spec.fromTheFuture" in str(refused.value)
