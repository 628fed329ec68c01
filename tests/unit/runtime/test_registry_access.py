"""Which registries a pull may reach: a host on the node (loopback, link-local, unspecified,
the node's own addresses, a cell's address, a name resolving to one) and plain HTTP only
when kukeond's configuration lists the registry. Before, any image reference (a realm
editor's) made kukeond send GETs under /v2/ to whatever listened on the node's loopback,
or, from the host's network namespace, to another realm's cells (a port scan past the
realms' isolation)."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.test_utils import TestServer

from kukeon.api.imageref import is_listed_registry, local_host_kind, registry_refusal
from kukeon.runtime.containerd.registry import RegistryClient
from kukeon.runtime.containerd.registryaccess import (
    NodeAddresses,
    RegistryAccess,
    RegistryRefusedError,
    _GuardedResolver,
    read_node_addresses,
)
from tests.fixtures.services import free_tcp_port

OWN = ipaddress.ip_address("10.20.30.40")
CELLS = ipaddress.ip_network("10.88.3.0/24")


@pytest.mark.parametrize(
    ("registry", "kind"),
    [
        ("127.0.0.1:5000", "a loopback address"),
        ("127.3.4.5", "a loopback address"),
        ("[::1]:5000", "a loopback address"),
        ("[::ffff:127.0.0.1]:5000", "a loopback address"),
        ("localhost:5000", "a loopback name"),
        ("registry.localhost", "a loopback name"),
        ("169.254.169.254", "a link-local address"),
        ("[fe80::1]:80", "a link-local address"),
        ("0.0.0.0:5000", "the unspecified address (this node)"),
        ("10.20.30.40:5000", "an address of this node"),
        ("10.88.3.7:5000", "a cell's address (in 10.88.3.0/24, a cell network of this node)"),
        ("10.88.3.7", "a cell's address (in 10.88.3.0/24, a cell network of this node)"),
        ("10.88.4.7:5000", None),
        ("10.20.30.41:5000", None),
        ("ghcr.io", None),
        ("docker.io", None),
    ],
)
def test_hosts_on_the_node(registry: str, kind: str | None) -> None:
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry
    host = host.split("]")[0].strip("[") if registry.startswith("[") else host
    assert local_host_kind(host, {OWN}, {CELLS}) == kind
    refusal = registry_refusal(registry, (), {OWN}, {CELLS})
    assert (refusal is None) == (kind is None)
    if refusal is not None:
        assert refusal.startswith(f"{registry} is {kind}")
        assert "insecureRegistries, --insecure-registry" in refusal
    assert registry_refusal(registry, [registry], {OWN}, {CELLS}) is None  # listed: allowed


def test_listing_by_host_and_port() -> None:
    assert is_listed_registry("127.0.0.1:5000", ["127.0.0.1:5000"])
    assert not is_listed_registry("127.0.0.1:5001", ["127.0.0.1:5000"])
    assert is_listed_registry("127.0.0.1:5001", ["127.0.0.1"])  # no port: every port
    assert is_listed_registry("reg.lan:5000", ["http://reg.lan:5000/"])


def test_plain_http_only_to_a_listed_registry() -> None:
    access = RegistryAccess(["reg.lan:5000"])
    assert access.refusal("http", "reg.lan", 5000) is None
    refused = access.refusal("http", "reg.lan", 6000)
    assert refused is not None
    assert refused.startswith("plain HTTP to reg.lan:6000 is refused")
    assert access.refusal("https", "reg.lan", 6000) is None


def test_the_nodes_addresses_are_read() -> None:
    own = read_node_addresses().own
    assert ipaddress.ip_address("127.0.0.1") in own  # lo is up in every namespace we run in


_READ_IN_OWN_NETNS = """
import json, sys
from kukeon.runtime.containerd.registryaccess import read_node_addresses
from kukeon.runtime.network.netlink import IPRoute
with IPRoute() as ipr:
    for name, address in (("k-ab12-abcdefgh", "10.99.7.1"), ("br-lan", "10.98.0.1")):
        ipr.link("add", ifname=name, kind="bridge")
        index = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=index, address=address, prefixlen=24)
found = read_node_addresses()
json.dump({"own": sorted(map(str, found.own)), "cells": sorted(map(str, found.cells))}, sys.stdout)
"""


def test_the_cells_networks_are_those_of_kukeon_bridges() -> None:
    """In a network namespace of its own (gone with the process): a kukeon bridge's
    network is a cell network, another bridge's (a LAN's) is not."""
    answer = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", _READ_IN_OWN_NETNS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(answer.stdout)
    assert found["cells"] == ["10.99.7.0/24"]
    assert {"10.99.7.1", "10.98.0.1"} <= set(found["own"])


class Listener:
    """An HTTP server on loopback that records every request it gets."""

    def __init__(self, handler: Callable[[web.Request], web.Response] | None = None) -> None:
        self.hits: list[str] = []
        self.handler = handler
        self.port = free_tcp_port()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path_qs)
        if self.handler is not None:
            return self.handler(request)
        return web.json_response({"errors": []}, status=404)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Listener], Any]]:
    servers: list[TestServer] = []

    async def start(listener: Listener) -> Listener:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", listener.handle)
        server = TestServer(app, host="127.0.0.1", port=listener.port)
        await server.start_server()
        servers.append(server)
        return listener

    yield start
    for server in servers:
        await server.close()


async def test_an_unlisted_loopback_registry_gets_no_request(
    serve: Callable[[Listener], Any],
) -> None:
    victim = await serve(Listener())
    async with RegistryClient() as client:
        with pytest.raises(RegistryRefusedError) as refused:
            await client.resolve(f"127.0.0.1:{victim.port}/x:y")
    assert "is a loopback address" in str(refused.value)
    assert f"127.0.0.1:{victim.port}/x:y" in str(refused.value)
    assert victim.hits == []


async def test_a_redirect_to_the_node_is_not_followed(serve: Callable[[Listener], Any]) -> None:
    victim = await serve(Listener())

    def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{victim.port}/admin")

    listed = await serve(Listener(redirect))
    async with RegistryClient(insecure_registries=[f"127.0.0.1:{listed.port}"]) as client:
        with pytest.raises(RegistryRefusedError) as refused:
            await client.resolve(f"127.0.0.1:{listed.port}/x:y")
    assert f"127.0.0.1:{victim.port}" in str(refused.value)
    assert len(listed.hits) == 1
    assert victim.hits == []


async def test_a_token_service_on_the_node_is_not_asked(serve: Callable[[Listener], Any]) -> None:
    victim = await serve(Listener())

    def challenge(request: web.Request) -> web.Response:
        realm = f"http://127.0.0.1:{victim.port}/token"
        return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})

    listed = await serve(Listener(challenge))
    async with RegistryClient(insecure_registries=[f"127.0.0.1:{listed.port}"]) as client:
        with pytest.raises(RegistryRefusedError):
            await client.resolve(f"127.0.0.1:{listed.port}/x:y")
    assert victim.hits == []


class FixedResolver:
    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("address", "refused"),
    [("127.0.0.1", True), ("10.20.30.40", True), ("10.88.3.9", True), ("93.184.216.34", False)],
)
async def test_a_name_resolving_to_the_node_is_refused(address: str, refused: bool) -> None:
    resolver = _GuardedResolver(RegistryAccess([], {OWN}, {CELLS}))
    resolver._inner = FixedResolver(address)  # type: ignore[assignment]
    if refused:
        with pytest.raises(RegistryRefusedError, match=f"resolves to {address}"):
            await resolver.resolve("evil.example", 443)
    else:
        assert (await resolver.resolve("evil.example", 443))[0]["host"] == address
    # listed: its addresses are not judged
    listed = _GuardedResolver(RegistryAccess(["evil.example"], {OWN}, {CELLS}))
    listed._inner = FixedResolver(address)  # type: ignore[assignment]
    assert (await listed.resolve("evil.example", 443))[0]["host"] == address


async def test_a_registry_at_a_cells_address_gets_no_request() -> None:
    """The pull is refused before any connection (no port-scan answer), naming the image."""
    node = NodeAddresses(own=frozenset(), cells=frozenset({CELLS}))
    async with RegistryClient(node=node) as client:
        with pytest.raises(RegistryRefusedError) as refused:
            await client.resolve("10.88.3.7:5000/x:y")
    assert "10.88.3.7:5000/x:y" in str(refused.value)
    assert "a cell's address (in 10.88.3.0/24" in str(refused.value)
