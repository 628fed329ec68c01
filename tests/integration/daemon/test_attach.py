"""Attach to an attachable container's terminal through kukeond's real unix socket.

The container is a busybox `sh` with a TTY whose I/O the containerd shim's logger owns, so
the test also restarts kukeond under it and lets it write more than a pipe holds while
no kukeond runs: the shell must neither block nor lose a byte.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest

from kukeon.api import Cell, DesiredCellState, Kind
from kukeon.daemon.app import Daemon
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, get_cell, update_cell

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


def shell(k: Kukeond, cid: str, **fields: object) -> dict[str, object]:
    return {"id": cid, "image": k.image.name, "command": "sh", "attachable": True, **fields}


def cell_url(k: Kukeond, name: str) -> str:
    return f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/{name}"


class Attached:
    """One attach session: what it received so far, and helpers to wait for text."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.output = b""
        self.status: dict[str, object] | None = None

    async def send(self, text: str) -> None:
        await self.socket.send_bytes(b"\x00" + text.encode())

    async def resize(self, width: int, height: int) -> None:
        await self.socket.send_bytes(
            b"\x04" + json.dumps({"width": width, "height": height}).encode()
        )

    async def wait_exit(self, within: float = 15.0) -> dict[str, object]:
        """Read until the session reports the container's exit; its status."""
        await self._receive_until(lambda: self.status is not None, within)
        assert self.status is not None
        return self.status

    async def expect(self, text: str, within: float = 15.0) -> None:
        await self._receive_until(lambda: text.encode() in self.output, within)

    async def _receive_until(self, done: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within):
            while not done():
                message = await self.socket.receive()
                if message.type != aiohttp.WSMsgType.BINARY:
                    raise AssertionError(f"socket ended ({message.type}); got {self.output!r}")
                channel, payload = message.data[:1], message.data[1:]
                if channel == b"\x01":
                    self.output += payload
                elif channel == b"\x03":
                    self.status = json.loads(payload)


async def test_attach_type_resize_detach_restart_and_logs(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(
        cell_doc(
            k,
            "term",
            [
                shell(k, "sh"),
                {"id": "side", "image": k.image.name, "command": "sleep", "args": ["3600"]},
            ],
        )
    )
    key = cell_key(k, "term")
    await k.wait_for(Kind.CELL, key, state="Ready")
    url = cell_url(k, "term")
    async with session(k) as http:
        # the only attachable container is the default
        async with http.ws_connect(f"{url}/attach") as socket:
            term = Attached(socket)
            await term.send("echo hi-$((40+2))\n")
            await term.expect("hi-42")
            await term.resize(100, 40)
            await term.send("stty size\n")
            await term.expect("40 100")
            # a burst after a delay: written while no kukeond runs, more than a pipe holds
            await term.send("(sleep 2; head -c 200000 /dev/zero | tr '\\0' y; echo BURST-END) &\n")
        # detached: the cell runs on
        await asyncio.sleep(0.5)
        assert str((await get_cell(k, key)).status.state) == "Ready"

        # errors name the cell and the container
        async with http.get(f"{url}/attach", params={"container": "side"}) as response:
            assert response.status == 400
            message = (await response.json())["message"]
            assert "side" in message
            assert "term" in message
            assert "not attachable" in message
        async with http.get(f"{url}/attach", params={"container": "nope"}) as response:
            assert response.status == 404

    # kukeond goes away for a while and comes back; the shell never noticed
    await k.daemon.stop()
    await asyncio.sleep(4)
    daemon = Daemon(k.config)
    await daemon.start()
    k.daemon = daemon
    assert daemon.registry is not None
    k.registry = daemon.registry
    await k.wait_for(Kind.CELL, key, state="Ready")
    cell = await get_cell(k, key)
    assert cell.status.containers[0].restart_count == 0

    async with session(k) as http:
        async with http.ws_connect(f"{url}/attach", params={"container": "sh"}) as socket:
            term = Attached(socket)
            await term.send("echo back-$((1+1))\n")
            await term.expect("back-2")
        async with http.get(f"{url}/log") as response:
            log = await response.text()
    assert "hi-42" in log
    assert "BURST-END" in log
    assert log.count("y") >= 200000
    assert "back-2" in log


async def test_attach_default_not_running_and_exit(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "pair", [shell(k, "a"), shell(k, "b")], tty={"default": "b"}))
    await k.apply(cell_doc(k, "two", [shell(k, "a"), shell(k, "b")]))
    await k.apply(
        cell_doc(
            k, "plain", [{"id": "p", "image": k.image.name, "command": "sleep", "args": ["3600"]}]
        )
    )
    for name in ("pair", "two", "plain"):
        await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")
    async with session(k) as http:
        # spec.tty.default picks b; exiting the shell ends the session with its code
        async with http.ws_connect(f"{cell_url(k, 'pair')}/attach") as socket:
            term = Attached(socket)
            # Expanded by the shell (the typed line's echo never matches): it runs in b.
            await term.send("echo in-$KUKEON_CONTAINER_ID-$((1+1)); exit 3\n")
            await term.expect("in-b-2")
            assert await term.wait_exit() == {"exitCode": 3}
        async with http.get(f"{cell_url(k, 'two')}/attach") as response:
            assert response.status == 400
            assert "several attachable containers" in (await response.json())["message"]
        async with http.get(f"{cell_url(k, 'plain')}/attach") as response:
            assert response.status == 400
            assert "no attachable container" in (await response.json())["message"]

        await update_cell(k, cell_key(k, "two"), spec={"desired_state": DesiredCellState.STOPPED})
        await k.wait_for(Kind.CELL, cell_key(k, "two"), state="Stopped")
        async with http.get(f"{cell_url(k, 'two')}/attach", params={"container": "a"}) as response:
            assert response.status == 409
            message = (await response.json())["message"]
            assert message == "container a of cell two is not running"
    stopped = await get_cell(k, cell_key(k, "two"))
    assert isinstance(stopped, Cell)


@pytest.mark.parametrize(
    "frame",
    [
        b'{"width": 5, "height": 1e309}',  # an infinity: int() raised OverflowError
        b'{"width": 100000, "height": 40}',  # past TERMINAL_MAX
        b"[" * 100_000,  # json's RecursionError
        b'{"width": true, "height": 40}',
    ],
    ids=["infinity", "too-wide", "deep", "bool"],
)
async def test_a_bad_resize_frame_is_ignored_and_the_session_goes_on(
    kukeond: Kukeond, frame: bytes
) -> None:
    # The client's frames cannot end its own session: before, an infinity closed it at once.
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "term", [shell(k, "sh")]))
    await k.wait_for(Kind.CELL, cell_key(k, "term"), state="Ready")
    async with session(k) as http, http.ws_connect(f"{cell_url(k, 'term')}/attach") as socket:
        term = Attached(socket)
        await term.resize(100, 40)
        await socket.send_bytes(b"\x04" + frame)
        await term.send("stty size; echo still-$((40+2))\n")
        await term.expect("still-42")
        assert b"40 100\r\n" in term.output  # the bad frame changed nothing
