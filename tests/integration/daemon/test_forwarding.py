"""Forwarding node-local requests between two API servers on one etcd, over TLS.

Each "node" is a real API server (TCP+TLS, tokens) with the forwarding middleware and
stand-in node routes that say which node answered and who called; the Node documents
publish their `status.apiEndpoint`. What is checked: a cell of node B is served through
node A (plain, followed stream, kill, WebSocket), the caller is authorised by A and B sees
the fleet token, every refusal names the cell or the node, a refused WebSocket upgrade
comes back with B's own Status, a fleet token B refuses is a 502, and a certificate that
names the nodes by `<node>.<fleetTlsServerDomain>` instead of their addresses is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
import yaml
from aiohttp import WSMsgType, web

from kukeon.api import Kind, Node, NodeState, parse_resource
from kukeon.apiserver import ApiServerRunner, ApiSettings, build_runner
from kukeon.apiserver.auth import denial
from kukeon.apiserver.handlers import principal_of, route_patterns
from kukeon.apiserver.status import ApiError, Cause
from kukeon.client.paths import LOG_STREAM_HEADER
from kukeon.daemon.forwarding import FORWARDED_BY_HEADER, Forwarder
from kukeon.store import Registry
from tests.fixtures.services import free_tcp_port, require_binary
from tests.integration.apiserver.conftest import (  # noqa: F401 - the certs fixture
    REPO,
    Certs,
    certs,
)

pytestmark = pytest.mark.integration

ADMIN = "admin-" + uuid.uuid4().hex
VIEWER = "viewer-" + uuid.uuid4().hex
FLEET = "fleet-" + uuid.uuid4().hex
CELLS = "/apis/kukeon.io/v1beta1/realms/default/spaces/default/stacks/default/cells"
IMAGES = "/apis/kukeon.io/v1beta1/realms/default/images"
SERVER_DOMAIN = "nodes.kukeon"
# A WebSocket upgrade asked as a plain GET, so that the answer's body can be read.
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


class StandIn:
    """Node routes that answer with the node's name and the caller they saw."""

    def __init__(self, node: str) -> None:
        self.node = node

    def seen(self, request: web.Request) -> dict[str, Any]:
        return {
            "node": self.node,
            "user": principal_of(request).user,
            "forwardedBy": request.headers.get(FORWARDED_BY_HEADER),
        }

    def add_routes(self, app: web.Application) -> None:
        _, cell_path = route_patterns(Kind.CELL)
        _, realm_path = route_patterns(Kind.REALM)
        app.router.add_get(f"{cell_path}/log", self.log)
        app.router.add_post(f"{cell_path}/kill", self.kill)
        app.router.add_get(f"{cell_path}/exec", self.exec)
        app.router.add_get(f"{realm_path}/images", self.images)
        app.router.add_post(f"{realm_path}/images/pull", self.images)
        app.router.add_post(f"{realm_path}/images/prune", self.images)
        app.router.add_get(f"{realm_path}/images/{{image:.+}}", self.images)
        app.router.add_delete(f"{realm_path}/images/{{image:.+}}", self.images)

    async def log(self, request: web.Request) -> web.StreamResponse:
        why = denial(principal_of(request), verb="get", realm="default", subresource="log")
        if why:
            raise ApiError(403, why)
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        if "stream" in request.query:
            response.headers[LOG_STREAM_HEADER] = request.query["stream"]
        await response.prepare(request)
        await response.write((json.dumps(self.seen(request)) + "\n").encode())
        if request.query.get("follow") == "true":
            for tick in range(1000):
                await asyncio.sleep(0.05)
                await response.write(f"tick{tick}\n".encode())
        await response.write_eof()
        return response

    async def kill(self, request: web.Request) -> web.StreamResponse:
        why = denial(principal_of(request), verb="update", realm="default", subresource="kill")
        if why:
            raise ApiError(403, why)
        return web.json_response(self.seen(request))

    async def images(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.seen(request))

    async def exec(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("command") == "refuse":  # as when the container is not running
            raise ApiError(
                409,
                f"container main of cell {request.match_info['cell']} on {self.node} "
                "is not running",
                name="main",
                kind="Container",
                causes=[Cause("status.containers[main].state", "Stopped")],
            )
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_bytes(b"\x01" + json.dumps(self.seen(request)).encode())
        async for message in socket:
            if message.type != WSMsgType.BINARY:
                continue
            if message.data == b"\x00":
                break
            await socket.send_bytes(b"\x01" + message.data[1:].upper())
        await socket.send_bytes(b'\x03{"exitCode": 7}')
        await socket.close()
        return socket


class Fleet(NamedTuple):
    registry: Registry
    runners: dict[str, ApiServerRunner]
    certs: Certs

    def url(self, node: str) -> str:
        return f"https://127.0.0.1:{self.runners[node].tcp_port}"

    def session(self, node: str, token: str) -> aiohttp.ClientSession:
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        return aiohttp.ClientSession(
            base_url=self.url(node),
            connector=aiohttp.TCPConnector(ssl=context),
            headers={"Authorization": f"Bearer {token}"},
        )

    async def set_node(self, name: str, state: NodeState, endpoint: str | None) -> None:
        try:
            node = await self.registry.get(Kind.NODE, (name,))
        except Exception:
            node = await self.registry.create(Node.model_validate({"metadata": {"name": name}}))
        assert isinstance(node, Node)
        status = node.status.model_copy(update={"state": state, "api_endpoint": endpoint})
        await self.registry.update_status(node.model_copy(update={"status": status}))


async def _create(registry: Registry, document: dict[str, Any]) -> None:
    await registry.create(parse_resource({"apiVersion": "kukeon.io/v1beta1", **document}))


def _cell(name: str, node: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "realmId": "default",
        "spaceId": "default",
        "stackId": "default",
        "containers": [{"id": "main", "image": "busybox:latest"}],
    }
    if node:
        spec["nodeName"] = node
    return {"kind": "Cell", "metadata": {"name": name}, "spec": spec}


def tls_settings(served: Certs, tokens: Path, **more: Any) -> ApiSettings:
    """A node's API server: a loopback TCP port over TLS serving ``served``, no socket."""
    return ApiSettings(
        socket_path=None,
        tcp_address=f"127.0.0.1:{free_tcp_port()}",
        tls_cert_file=served.cert,
        tls_key_file=served.key,
        tokens_file=tokens,
        **more,
    )


@contextlib.asynccontextmanager
async def running_fleet(
    registry: Registry,
    served: Certs,
    tmp_path: Path,
    *,
    users: list[dict[str, Any]],
    fleet_token: str,
    routes: Mapping[str, Callable[[web.Application], None] | None],
) -> AsyncIterator[Fleet]:
    """An API server on ``registry`` serving ``served`` for each node of ``routes`` (the
    function adding its node routes; None: an API-only server, no Node of its own), each
    forwarding with ``fleet_token`` (role ``node``; ``users`` are the other tokens of
    ``tmp_path/tokens.yaml``); the nodes Ready and the default realm, space and stack."""
    tokens = tmp_path / "tokens.yaml"
    fleet = {"token": fleet_token, "user": "fleet", "role": "node"}
    tokens.write_text(yaml.safe_dump({"tokens": [*users, fleet]}))
    token_file = tmp_path / "fleet.token"
    token_file.write_text(fleet_token + "\n")
    runners: dict[str, ApiServerRunner] = {}
    forwarders: list[Forwarder] = []
    try:
        for name, add_routes in routes.items():
            settings = tls_settings(served, tokens, request_timeout=10)
            runner = await build_runner(settings=settings, registry=registry)
            if add_routes is not None:
                add_routes(runner.app)
            forwarder = Forwarder(
                registry=registry, node_name=name, token_file=token_file, ca_file=served.ca
            )
            await forwarder.start()
            forwarders.append(forwarder)
            forwarder.install(runner.app, serves_cells=add_routes is not None)
            await runner.start()
            runners[name] = runner
        running = Fleet(registry, runners, served)
        for name, add_routes in routes.items():
            if add_routes is not None:
                await running.set_node(name, NodeState.READY, running.url(name))
        await _create(registry, {"kind": "Realm", "metadata": {"name": "default"}})
        await _create(
            registry,
            {"kind": "Space", "metadata": {"name": "default"}, "spec": {"realmId": "default"}},
        )
        await _create(
            registry,
            {
                "kind": "Stack",
                "metadata": {"name": "default"},
                "spec": {"realmId": "default", "spaceId": "default"},
            },
        )
        yield running
    finally:
        for runner in runners.values():
            await runner.stop()
        for forwarder in forwarders:
            await forwarder.close()


@pytest.fixture(scope="module")
def named_certs() -> Iterator[Certs]:
    """A CA of its own and a server certificate for *.nodes.kukeon only: no address."""
    require_binary("openssl", "openssl")
    with tempfile.TemporaryDirectory(prefix="kukeon-named-ca-") as directory:
        out = Path(directory)
        subprocess.run(
            [
                "bash",
                str(REPO / "hack" / "make-ca.sh"),
                "--out",
                str(out),
                "--hosts",
                f"*.{SERVER_DOMAIN}",
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
        yield Certs(out / "ca.crt", out / "server.crt", out / "server.key")


@contextlib.asynccontextmanager
async def serving_node(
    fleet: Fleet, name: str, served: Certs, tmp_path: Path
) -> AsyncIterator[None]:
    """One more node with its stand-in routes, serving ``served``, registered Ready."""
    settings = tls_settings(served, tmp_path / "tokens.yaml", request_timeout=10)
    runner = await build_runner(settings=settings, registry=fleet.registry)
    StandIn(name).add_routes(runner.app)
    try:
        await runner.start()
        fleet.runners[name] = runner
        await fleet.set_node(name, NodeState.READY, fleet.url(name))
        yield
    finally:
        fleet.runners.pop(name, None)
        await runner.stop()


@contextlib.asynccontextmanager
async def forwarding_node(
    fleet: Fleet,
    name: str,
    tmp_path: Path,
    *,
    token: str = FLEET,
    ca: Path | None = None,
    server_domain: str | None = None,
    system_cas: bool = False,
) -> AsyncIterator[aiohttp.ClientSession]:
    """An API-only node that forwards with ``token``, trusting ``ca`` (the fleet's CA by
    default; no CA file, so the system's CAs, with ``system_cas``); an admin session to it."""
    token_file = tmp_path / f"{name}.token"
    token_file.write_text(token + "\n")
    settings = tls_settings(fleet.certs, tmp_path / "tokens.yaml", request_timeout=10)
    runner = await build_runner(settings=settings, registry=fleet.registry)
    forwarder = Forwarder(
        registry=fleet.registry,
        node_name=name,
        token_file=token_file,
        ca_file=None if system_cas else ca or fleet.certs.ca,
        server_domain=server_domain,
    )
    try:
        await forwarder.start()
        forwarder.install(runner.app, serves_cells=False)
        await runner.start()
        fleet.runners[name] = runner
        async with fleet.session(name, ADMIN) as client:
            yield client
    finally:
        fleet.runners.pop(name, None)
        await runner.stop()
        await forwarder.close()


@pytest.fixture
async def fleet(
    registry: Registry,
    certs: Certs,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> AsyncIterator[Fleet]:
    users: list[dict[str, Any]] = [
        {"token": ADMIN, "user": "alice", "role": "admin"},
        {"token": VIEWER, "user": "victor", "role": "viewer"},
    ]
    async with running_fleet(
        registry,
        certs,
        tmp_path,
        users=users,
        fleet_token=FLEET,
        routes={name: StandIn(name).add_routes for name in ("na", "nb")},
    ) as running:
        for cell, node in (("on-a", "na"), ("on-b", "nb"), ("nowhere", None), ("lost", "nc")):
            await _create(registry, _cell(cell, node))
        yield running


async def test_logs_kill_and_images_of_another_node_come_from_it(fleet: Fleet) -> None:
    async with fleet.session("na", ADMIN) as client:
        local = await client.get(f"{CELLS}/on-a/log")
        assert json.loads(await local.text()) == {
            "node": "na",
            "user": "alice",
            "forwardedBy": None,
        }
        remote = await client.get(f"{CELLS}/on-b/log")
        assert remote.status == 200
        assert remote.headers["Content-Type"].startswith("text/plain")
        assert LOG_STREAM_HEADER not in remote.headers
        # Which stream a log holds is passed back (kukectl run --rm reads it).
        stderr = await client.get(f"{CELLS}/on-b/log", params={"stream": "Stderr"})
        assert stderr.headers[LOG_STREAM_HEADER] == "Stderr"
        assert json.loads(await remote.text()) == {
            "node": "nb",
            "user": "fleet",
            "forwardedBy": "na",
        }
        killed = await client.post(f"{CELLS}/on-b/kill", params={"signal": "TERM"})
        assert (await killed.json())["node"] == "nb"
        images = await client.get(IMAGES, params={"node": "nb"})
        assert (await images.json())["node"] == "nb"
        assert (await (await client.get(IMAGES)).json())["node"] == "na"


async def test_every_image_route_is_forwarded_to_the_named_node(fleet: Fleet) -> None:
    image = f"{IMAGES}/docker.io/library/busybox:latest"
    on_b = {"node": "nb"}
    async with fleet.session("na", ADMIN) as client:
        for answer in (
            await client.get(image, params=on_b),
            await client.delete(image, params={**on_b, "force": "true"}),
            await client.post(f"{IMAGES}/pull", params={**on_b, "image": "busybox"}),
            await client.post(f"{IMAGES}/prune", params=on_b),
        ):
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["node"] == "nb"
        assert (await (await client.delete(image)).json())["node"] == "na"
    async with fleet.session("na", VIEWER) as client:
        assert (await (await client.get(image, params=on_b)).json())["node"] == "nb"
        for refused in (
            await client.delete(image, params=on_b),
            await client.post(f"{IMAGES}/pull", params={**on_b, "image": "busybox"}),
            await client.post(f"{IMAGES}/prune", params=on_b),
        ):
            code, body = await _status(refused)
            assert code == 403
            assert "viewer" in body["message"]


async def test_followed_logs_stream_through_the_forwarding_node(fleet: Fleet) -> None:
    async with (
        fleet.session("na", ADMIN) as client,
        client.get(f"{CELLS}/on-b/log", params={"follow": "true"}) as response,
    ):
        assert response.status == 200
        first = json.loads(await asyncio.wait_for(response.content.readline(), 5))
        assert first["node"] == "nb"
        ticks = [await asyncio.wait_for(response.content.readline(), 5) for _ in range(3)]
        assert ticks == [b"tick0\n", b"tick1\n", b"tick2\n"]


async def test_exec_websocket_is_relayed_both_ways(fleet: Fleet) -> None:
    async with (
        fleet.session("na", ADMIN) as client,
        client.ws_connect(f"{CELLS}/on-b/exec", params={"command": "cat"}) as socket,
    ):
        hello = await asyncio.wait_for(socket.receive_bytes(), 5)
        assert json.loads(hello[1:])["node"] == "nb"
        await socket.send_bytes(b"\x00piped")
        assert await asyncio.wait_for(socket.receive_bytes(), 5) == b"\x01PIPED"
        await socket.send_bytes(b"\x00")
        assert await asyncio.wait_for(socket.receive_bytes(), 5) == b'\x03{"exitCode": 7}'
        closing = await asyncio.wait_for(socket.receive(), 5)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


async def _status(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    return response.status, await response.json()


async def test_refusals_name_the_cell_and_the_node(fleet: Fleet) -> None:
    async with fleet.session("na", ADMIN) as client:
        code, body = await _status(await client.get(f"{CELLS}/nowhere/log"))
        assert code == 409
        assert "default/default/default/nowhere is not placed on a node" in body["message"]

        code, body = await _status(await client.get(f"{CELLS}/lost/log"))
        assert code == 503
        assert "cell default/default/default/lost is on node nc" in body["message"]
        assert "no node of that name is registered" in body["message"]
        assert body["details"]["name"] == "nc"

        # A node the client names that no one registered is the client's 404, naming the
        # parameter (it was a 503 "the images of realm default is on node nowhere").
        code, body = await _status(await client.get(IMAGES, params={"node": "nowhere"}))
        assert code == 404, body
        assert body["message"].startswith("Node 'nowhere' not found"), body
        assert [c["field"] for c in body["details"]["causes"]] == ["node"]

        await fleet.set_node("nb", NodeState.NOT_READY, fleet.url("nb"))
        code, body = await _status(await client.get(f"{CELLS}/on-b/log"))
        assert code == 503
        assert "on node nb, but that node is NotReady" in body["message"]
        with contextlib.suppress(aiohttp.WSServerHandshakeError):
            await client.ws_connect(f"{CELLS}/on-b/exec", params={"command": "sh"})
            raise AssertionError("the exec upgrade should have been refused")

        await fleet.set_node("nb", NodeState.READY, None)
        code, body = await _status(await client.get(f"{CELLS}/on-b/log"))
        assert code == 503
        assert "publishes no API endpoint" in body["message"]

        await fleet.set_node("nb", NodeState.READY, f"https://127.0.0.1:{free_tcp_port()}")
        code, body = await _status(await client.get(f"{CELLS}/on-b/log"))
        assert code == 503
        assert "cannot be reached" in body["message"]

    # Already forwarded once: never again (a cell on na asked of nb as if forwarded).
    async with fleet.session("nb", FLEET) as client:
        code, body = await _status(
            await client.get(f"{CELLS}/on-a/log", headers={FORWARDED_BY_HEADER: "nc"})
        )
        assert code == 508
        assert body["reason"] == "LoopDetected"
        assert "already forwarded by node nc to nb" in body["message"]


async def test_the_caller_is_authorised_by_the_first_node(fleet: Fleet) -> None:
    async with fleet.session("na", VIEWER) as client:
        assert json.loads(await (await client.get(f"{CELLS}/on-b/log")).text())["node"] == "nb"
        code, body = await _status(await client.post(f"{CELLS}/on-b/kill"))
        assert code == 403
        assert "viewer" in body["message"]
    # The fleet token reaches node routes only: never the registry.
    async with fleet.session("nb", FLEET) as client:
        code, body = await _status(await client.get(CELLS))
        assert code == 403
        assert "(node) may only reach node-local routes" in body["message"]
        assert (await client.get(f"{CELLS}/on-b/log")).status == 200


async def test_an_api_only_server_forwards_every_cell(fleet: Fleet, tmp_path: Path) -> None:
    async with forwarding_node(fleet, "api-only", tmp_path) as client:
        for cell, node in (("on-a", "na"), ("on-b", "nb")):
            answer = await client.get(f"{CELLS}/{cell}/log")
            assert json.loads(await answer.text())["node"] == node
        code, body = await _status(await client.get(IMAGES))
        assert code == 400
        assert "?node=NAME" in body["message"]
        assert (await (await client.get(IMAGES, params={"node": "nb"})).json())["node"] == "nb"
        for refused in (
            await client.delete(f"{IMAGES}/busybox"),
            await client.post(f"{IMAGES}/prune"),
        ):
            code, body = await _status(refused)
            assert code == 400
            assert "?node=NAME" in body["message"]
        pulled = await client.post(f"{IMAGES}/pull", params={"node": "nb", "image": "b"})
        assert (await pulled.json())["node"] == "nb"


async def test_a_refused_exec_upgrade_comes_back_with_the_nodes_own_status(fleet: Fleet) -> None:
    refuse = {"command": "refuse"}
    async with fleet.session("nb", ADMIN) as client:
        code, direct = await _status(
            await client.get(f"{CELLS}/on-b/exec", params=refuse, headers=UPGRADE)
        )
    assert code == 409
    assert direct["message"] == "container main of cell on-b on nb is not running"
    async with fleet.session("na", ADMIN) as client:
        code, forwarded = await _status(
            await client.get(f"{CELLS}/on-b/exec", params=refuse, headers=UPGRADE)
        )
        assert code == 409
        assert forwarded == {
            **direct,
            "message": "container main of cell on-b on nb is not running (answered by node "
            "nb for the exec of cell default/default/default/on-b, forwarded by node na)",
        }
        assert forwarded["details"] == {
            "name": "main",
            "kind": "Container",
            "causes": [{"field": "status.containers[main].state", "message": "Stopped"}],
        }
        # A WebSocket client (kukectl) sees the same code.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(f"{CELLS}/on-b/exec", params=refuse)
        assert refused.value.status == 409


async def test_a_node_that_refuses_the_fleet_token_is_a_bad_gateway(
    fleet: Fleet, tmp_path: Path
) -> None:
    # nx forwards with a token nb does not know (401 there).
    async with forwarding_node(
        fleet, "nx", tmp_path, token="stranger-" + uuid.uuid4().hex
    ) as client:
        for method, path, headers in (
            ("GET", f"{CELLS}/on-b/log", {}),
            ("GET", f"{CELLS}/on-b/exec", UPGRADE),
        ):
            code, body = await _status(await client.request(method, path, headers=headers))
            assert code == 502, path
            assert body["reason"] == "BadGateway"
            assert body["details"]["name"] == "nb"
            assert "cell default/default/default/on-b is on node nb" in body["message"]
            assert "node nb refused this node's fleet token (HTTP 401)" in body["message"]
            assert "must map the fleet token to role node" in body["message"]
    # ny forwards with a token nb maps to viewer: it may read logs, but not kill (403 there).
    async with forwarding_node(fleet, "ny", tmp_path, token=VIEWER) as client:
        code, body = await _status(await client.post(f"{CELLS}/on-b/kill"))
        assert code == 502
        assert "refused this node's fleet token (HTTP 403)" in body["message"]
        assert "viewer" in body["message"]  # nb's own reason comes along


async def test_certificates_by_node_name_under_the_server_domain(
    fleet: Fleet,
    named_certs: Certs,
    tmp_path: Path,
) -> None:
    """nd serves a certificate for *.nodes.kukeon only; it is reached at 127.0.0.1."""
    await _create(fleet.registry, _cell("on-d", "nd"))
    async with serving_node(fleet, "nd", named_certs, tmp_path):
        async with forwarding_node(
            fleet, "nx", tmp_path, ca=named_certs.ca, server_domain=SERVER_DOMAIN
        ) as client:
            answer = await client.get(f"{CELLS}/on-d/log")
            assert answer.status == 200
            assert json.loads(await answer.text())["node"] == "nd"
            async with client.ws_connect(f"{CELLS}/on-d/exec", params={"command": "cat"}) as ws:
                hello = await asyncio.wait_for(ws.receive_bytes(), 5)
                assert json.loads(hello[1:])["node"] == "nd"
            # The fleet's other nodes serve a certificate for their address only.
            code, body = await _status(await client.get(f"{CELLS}/on-b/log"))
            assert code == 503
            assert "valid for the name nb.nodes.kukeon" in body["message"]

        # Checked for the address (no domain), or for another domain: refused, and said so.
        for domain, expected in (
            (None, "valid for its address"),
            ("other.kukeon", "nd.other.kukeon"),
        ):
            async with forwarding_node(
                fleet, "ny", tmp_path, ca=named_certs.ca, server_domain=domain
            ) as client:
                for headers in ({}, UPGRADE):
                    path = f"{CELLS}/on-d/" + ("exec" if headers else "log")
                    code, body = await _status(await client.get(path, headers=headers))
                    assert code == 503, (domain, path)
                    assert "is not one this node trusts" in body["message"]
                    assert expected in body["message"]
                    assert body["details"]["name"] == "nd"


async def test_without_a_fleet_ca_the_system_cas_are_trusted(fleet: Fleet, tmp_path: Path) -> None:
    """No fleetCaFile: the system CAs' context, made at the first forwarding (issue 18: not
    at start), checks the other node's certificate; the fleet's own CA is not among them."""
    async with forwarding_node(fleet, "nz", tmp_path, system_cas=True) as client:
        for headers in ({}, UPGRADE, {}):
            path = f"{CELLS}/on-b/" + ("exec" if headers else "log")
            code, body = await _status(await client.get(path, headers=headers))
            assert code == 503, path
            assert "is not one this node trusts" in body["message"]
            assert "the fleet CA (the system CAs)" in body["message"]
            assert body["details"]["name"] == "nb"
