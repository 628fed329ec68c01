"""kill -9 kukeond while a client is attached to a container's terminal.

The container's terminal I/O belongs to the containerd shim and its logger, so the shell
keeps its TTY, keeps writing (more than a pipe holds) while no kukeond runs, is not
restarted by the next kukeond, and can be attached again at once.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from kukeon.api import Cell, Kind

from .test_crash_recovery import Setup, _doc, make_hierarchy
from .test_crash_recovery import crashable as crashable  # the fixture, re-exported

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"


async def _until(socket: aiohttp.ClientWebSocketResponse, text: bytes, within: float) -> bytes:
    seen = b""
    async with asyncio.timeout(within):
        while text not in seen:
            message = await socket.receive()
            assert message.type == aiohttp.WSMsgType.BINARY, (message, seen)
            if message.data[:1] == b"\x01":
                seen += message.data[1:]
    return seen


async def test_kill_9_under_an_attached_terminal(crashable: Setup) -> None:
    s = crashable
    realm = s.realm
    socket_path = s.state_dir.parent / "run" / "kukeond.sock"
    await make_hierarchy(s)
    await s.registry.create(
        _doc(
            kind="Cell",
            metadata={"name": "term"},
            spec={
                "realmId": realm,
                "spaceId": "s1",
                "stackId": "st1",
                "containers": [
                    {"id": "sh", "image": s.image.name, "command": "sh", "attachable": True}
                ],
            },
        )
    )
    key = (realm, "s1", "st1", "term")
    await s.wait(Kind.CELL, key, "Ready", within=60)
    url = f"{API}/realms/{realm}/spaces/s1/stacks/st1/cells/term"
    task = await s.containerd.tasks(s.namespace).get("s1_st1_term_sh")

    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as http:
        socket = await http.ws_connect(f"{url}/attach")
        await socket.send_bytes(b"\x00echo before-$((1+1))\n")
        await _until(socket, b"before-2", 15)
        await socket.send_bytes(
            b"\x00(sleep 2; head -c 300000 /dev/zero | tr '\\0' z; echo BURST-END) &\n"
        )
        await asyncio.sleep(0.3)
        s.daemon.kill()  # the attached session's kukeond dies with its end of the FIFOs
        with pytest.raises((AssertionError, TimeoutError)):
            await _until(socket, b"never", 5)
        await socket.close()

    await asyncio.sleep(3)  # the burst is written while no kukeond runs
    s.daemon.start()
    await s.wait(Kind.CELL, key, "Ready", within=60)
    again = await s.containerd.tasks(s.namespace).get("s1_st1_term_sh")
    assert again.pid == task.pid  # the same shell, never restarted
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as http:
        deadline = asyncio.get_running_loop().time() + 30
        while True:  # the API comes up shortly after the controllers
            try:
                socket = await http.ws_connect(f"{url}/attach")
                break
            except aiohttp.ClientError:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.3)
        await socket.send_bytes(b"\x00echo after-$((2+2))\n")
        await socket.send_bytes(b"\x04" + json.dumps({"width": 90, "height": 30}).encode())
        await _until(socket, b"after-4", 15)
        await socket.close()
        async with http.get(f"{url}/log") as response:
            log = await response.text()
    assert log.count("z") >= 300000
    assert "BURST-END" in log
    cell = await s.registry.get(Kind.CELL, key)
    assert isinstance(cell, Cell)
    assert cell.status.containers[0].restart_count == 0
