"""cp and portforward through the fleet: asked of one node, served by the cell's node.

Two real API servers on one etcd, over TLS, as in ``test_forwarding``, each with the real
``TransferRoutes``. The cell on node ``nb`` has ``127.0.0.1`` as its address, where the
test listens with an echo server, so a port-forward asked of ``na`` goes through the
forwarding (fleet token, role ``node``) to ``nb``'s route and back. ``cp`` needs a
containerd, so only its refusals (which ``nb`` answers before running anything) are
checked here; the copy itself is in ``test_transfer_routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import WSMsgType

from kukeon.api import Cell, Kind
from kukeon.api.cell import CellNetworkStatus
from kukeon.controllers import Controllers
from kukeon.daemon.transfer import TransferRoutes
from kukeon.store import Registry
from tests.fixtures.services import free_tcp_port
from tests.integration.apiserver.conftest import (  # noqa: F401 - the certs fixture
    Certs,
    certs,
)
from tests.integration.daemon.test_forwarding import (
    UPGRADE,
    Fleet,
    _cell,
    _create,
    running_fleet,
)

pytestmark = pytest.mark.integration

ADMIN = "admin-" + uuid.uuid4().hex
VIEWER = "viewer-" + uuid.uuid4().hex
EDITOR = "editor-" + uuid.uuid4().hex
OUTSIDER = "outsider-" + uuid.uuid4().hex
FLEET = "fleet-" + uuid.uuid4().hex
CELLS = "/apis/kukeon.io/v1beta1/realms/default/spaces/default/stacks/default/cells"


class Echo:
    """A TCP echo server on 127.0.0.1 that ends its side when the client ends its own."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def transfer_fleet(
    registry: Registry,
    certs: Certs,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> AsyncIterator[Fleet]:
    users: list[dict[str, Any]] = [
        {"token": ADMIN, "user": "alice", "role": "admin"},
        {"token": VIEWER, "user": "victor", "role": "viewer"},
        {"token": EDITOR, "user": "eve", "role": "editor", "realms": ["default"]},
        {"token": OUTSIDER, "user": "oscar", "role": "editor", "realms": ["other"]},
    ]
    # No containerd here: only portforward and cp's refusals are served.
    routes = {
        name: TransferRoutes(controllers=cast(Controllers, None), registry=registry).add_routes
        for name in ("na", "nb")
    }
    async with running_fleet(
        registry, certs, tmp_path, users=users, fleet_token=FLEET, routes=routes
    ) as running:
        await _create(registry, _cell("on-b", "nb"))
        await _create(registry, _cell("unattached", "nb"))
        await _create(registry, _cell("moved", "nb"))
        # on-b as nb reported it; moved (its nodeName changed from na) as na last did.
        for name, reporter in (("on-b", "nb"), ("moved", "na")):
            found = await registry.get(Kind.CELL, ("default", "default", "default", name))
            assert isinstance(found, Cell)
            status = found.status.model_copy(
                update={"network": CellNetworkStatus(ip="127.0.0.1"), "node_name": reporter}
            )
            await registry.update_status(found.model_copy(update={"status": status}))
        yield running


async def test_portforward_through_another_node_reaches_the_cell(transfer_fleet: Fleet) -> None:
    echo = Echo()
    port = await echo.start()
    try:
        async with (
            transfer_fleet.session("na", EDITOR) as client,
            client.ws_connect(f"{CELLS}/on-b/portforward", params={"port": str(port)}) as ws,
        ):
            payload = bytes(range(256)) * 4096  # 1 MiB, more than any one buffer
            for start in range(0, len(payload), 50_000):
                await ws.send_bytes(b"\x00" + payload[start : start + 50_000])
            await ws.send_bytes(b"\x00")  # our side ends: the echo ends its own
            received = bytearray()
            async for message in ws:
                assert message.type == WSMsgType.BINARY
                assert message.data[:1] == b"\x01", message.data[:200]
                if len(message.data) == 1:
                    break
                received += message.data[1:]
            assert bytes(received) == payload
    finally:
        assert echo.server is not None
        echo.server.close()


async def _refused(fleet: Fleet, token: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    async with (
        fleet.session("na", token) as client,
        client.get(path, params=params, headers=UPGRADE) as response,
    ):
        body: dict[str, Any] = await response.json()
        body["httpCode"] = response.status
        return body


async def test_who_may_forward_and_copy_is_decided_by_the_first_node(
    transfer_fleet: Fleet,
) -> None:
    fleet = transfer_fleet
    for sub, params in (("portforward", {"port": "80"}), ("cp", {"path": "/x", "mode": "read"})):
        body = await _refused(fleet, VIEWER, f"{CELLS}/on-b/{sub}", params)
        assert body["httpCode"] == 403
        assert "viewer" in body["message"]
        body = await _refused(fleet, OUTSIDER, f"{CELLS}/on-b/{sub}", params)
        assert body["httpCode"] == 403
        assert "may not create in realm 'default'" in body["message"]


async def test_an_outsider_learns_nothing_of_which_cells_a_realm_has(
    transfer_fleet: Fleet,
) -> None:
    """An editor of another realm is refused before the cell is read, on the node that
    forwards and on the cell's own node alike: a 404 for a missing cell beside a 403 for
    an existing one told it the names of the realm's cells."""
    fleet = transfer_fleet
    for node in ("na", "nb"):
        for sub, params in (("portforward", {"port": "80"}), ("cp", {"path": "/", "mode": "read"})):
            answers = []
            for cell in ("on-b", "no-such-cell"):
                async with (
                    fleet.session(node, OUTSIDER) as client,
                    client.get(f"{CELLS}/{cell}/{sub}", params=params, headers=UPGRADE) as reply,
                ):
                    body = await reply.json()
                    answers.append((reply.status, body["message"]))
            assert answers[0] == answers[1], answers
            assert answers[0][0] == 403, answers
            assert "'oscar' (editor) may not create in realm 'default'" in answers[0][1]


async def test_refusals_come_back_from_the_cells_node(transfer_fleet: Fleet) -> None:
    fleet = transfer_fleet
    body = await _refused(fleet, ADMIN, f"{CELLS}/on-b/cp", {"path": "/x", "mode": "copy"})
    assert body["httpCode"] == 400
    assert "mode: 'copy' is not read or write" in body["message"]
    assert "answered by node nb" in body["message"]
    body = await _refused(fleet, ADMIN, f"{CELLS}/on-b/portforward", {"port": "0"})
    assert body["httpCode"] == 400
    assert "not a port number" in body["message"]
    body = await _refused(fleet, EDITOR, f"{CELLS}/unattached/portforward", {"port": "80"})
    assert body["httpCode"] == 409
    assert "has no address on node nb yet: its status is no node's yet" in body["message"]

    # Nothing listens there: the stream says so, in one line.
    port = free_tcp_port()
    async with (
        fleet.session("na", EDITOR) as client,
        client.ws_connect(f"{CELLS}/on-b/portforward", params={"port": str(port)}) as ws,
    ):
        message = await asyncio.wait_for(ws.receive(), 10)
        assert message.data[:1] == b"\x03"
        error = json.loads(message.data[1:])["error"]
        assert error == (
            f"cannot connect to port {port} of cell on-b (127.0.0.1): Connection refused"
        )
        with contextlib.suppress(asyncio.TimeoutError):
            closing = await asyncio.wait_for(ws.receive(), 5)
            assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


async def test_an_address_another_node_reported_is_not_connected_to(
    transfer_fleet: Fleet,
) -> None:
    """A cell moved to nb (its editor changed nodeName) still shows na's address until nb
    reports: on nb that address may be another realm's cell, so nb refuses rather than
    connect to it (before, the echo listening there answered)."""
    echo = Echo()
    port = await echo.start()
    try:
        body = await _refused(
            transfer_fleet, EDITOR, f"{CELLS}/moved/portforward", {"port": str(port)}
        )
        assert body["httpCode"] == 409, body["message"]  # the whole message if it fails
        assert "has no address on node nb yet: its status is node na's" in body["message"]
    finally:
        assert echo.server is not None
        echo.server.close()
