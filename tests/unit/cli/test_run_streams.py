"""``kukectl run --rm`` writes the container's stdout on its stdout and its stderr on its
stderr, as ``docker run`` does (the log route's ``stream``); a server that does not know
``stream`` gets the whole log written once, on stdout, as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from kukeon.api import Kind
from kukeon.cli.run import _run_to_exit
from kukeon.client.apiclient import ApiClient
from kukeon.client.paths import LOG_STREAM_HEADER, object_path

KEY = ("r", "s", "st", "c")
CELL = {
    "apiVersion": "kukeon.io/v1beta1",
    "kind": "Cell",
    "metadata": {"name": "c"},
    "spec": {
        "realmId": "r",
        "spaceId": "s",
        "stackId": "st",
        "containers": [{"id": "c", "image": "i"}],
    },
    "status": {"state": "Exited", "containers": [{"id": "c", "exitCode": 3}]},
}
LOG = {"stdout": b"out 1\nout 2\n", "stderr": b"err 1\n"}


async def _server(socket: Path, *, knows_streams: bool) -> AsyncIterator[web.AppRunner]:
    async def cell(request: web.Request) -> web.Response:
        return web.json_response(CELL)

    async def log(request: web.Request) -> web.StreamResponse:
        wanted = request.query.get("stream", "All")
        if not knows_streams or wanted == "All":
            return web.Response(body=LOG["stdout"] + LOG["stderr"])
        answer = web.Response(body=LOG[wanted.lower()])
        answer.headers[LOG_STREAM_HEADER] = wanted
        return answer

    app = web.Application()
    path = object_path(Kind.CELL, KEY)
    app.router.add_get(path, cell)
    app.router.add_delete(path, cell)
    app.router.add_get(f"{path}/log", log)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(socket)).start()
    try:
        yield runner
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("knows_streams", [True, False])
async def test_run_rm_splits_the_streams_when_the_server_can(
    tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes], knows_streams: bool
) -> None:
    socket = tmp_path / "api.sock"
    async for _ in _server(socket, knows_streams=knows_streams):
        async with ApiClient(server=f"unix://{socket}") as client:
            code = await _run_to_exit(client, KEY, within=5)
    assert code == 3
    out, err = capfdbinary.readouterr()
    if knows_streams:
        assert (out, err) == (LOG["stdout"], LOG["stderr"])
    else:
        assert (out, err) == (LOG["stdout"] + LOG["stderr"], b"")
