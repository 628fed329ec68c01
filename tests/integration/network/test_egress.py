"""Egress policy with nftables against real traffic from cell namespaces.

Listeners only use addresses of this machine: a server cell on a second space of the
client's realm (so the client's traffic crosses the forward hook) and the client space's
own gateway address on the host (the input hook). A server in another realm is never
reached, whatever either space's policy.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from ipaddress import IPv4Network

import pytest

from kukeon.runtime.network import CellAttachment, EgressRule, EgressRuleset
from kukeon.runtime.network.egress import chain_name, realm_set_name
from tests.integration.network.conftest import (
    NetworkHarness,
    ping,
    run,
    tcp_connects,
    tcp_listener,
)

pytestmark = pytest.mark.integration


def four_ports() -> tuple[int, int, int, int]:
    base = 20000 + secrets.randbelow(20000)
    return base, base + 1, base + 2, base + 3


async def test_default_deny_allows_only_listed_cidr_and_port(harness: NetworkHarness) -> None:
    server_realm, server_space = harness.new_names()
    client_realm, client_space = server_realm, harness.new_names()[1]
    server_status = await harness.space(server_realm, server_space)
    server = await harness.cell(server_realm, server_space)
    assert isinstance(server, CellAttachment)
    allowed, blocked, host_allowed, host_blocked = four_ports()

    # Apply the policy before the cells exist, as the space controller does.
    client_status = await harness.space(client_realm, client_space)
    gateway = client_status.gateway
    deny = EgressRuleset(
        default="deny",
        rules=(
            EgressRule(cidr=server_status.subnet, ports=(allowed,)),
            EgressRule(host=str(gateway), ports=(host_allowed, 9)),
        ),
    )
    applied = await harness.space(client_realm, client_space, deny)
    assert applied.egress.chain == chain_name(client_status.bridge_name)
    client = await harness.cell(client_realm, client_space)
    neighbour = await harness.cell(client_realm, client_space)
    assert isinstance(client, CellAttachment)
    assert isinstance(neighbour, CellAttachment)

    async with (
        tcp_listener("0.0.0.0", (allowed, blocked), netns=server.netns_path),
        tcp_listener(gateway, (host_allowed, host_blocked)),
    ):
        results = await asyncio.gather(
            tcp_connects(client.netns_path, server.ip, allowed),
            tcp_connects(client.netns_path, server.ip, blocked),
            tcp_connects(client.netns_path, gateway, host_allowed),
            tcp_connects(client.netns_path, gateway, host_blocked),
        )
        assert list(results) == [True, False, True, False]
        # Cells of one space still talk to each other under a deny policy.
        code, output = await ping(client.netns_path, neighbour.ip)
        assert code == 0, output

        counters = {c.name: c for c in await harness.networks.egress.counters(
            bridge=client_status.bridge_name
        )}  # fmt: skip
        assert counters["rule-0"].packets >= 1
        assert counters["rule-1"].packets >= 1
        assert counters["default"].packets >= 2
        assert counters["established"].packets >= 1

        # Replacing the policy with "allow everything" takes effect at once.
        await harness.space(client_realm, client_space, EgressRuleset(default="allow"))
        results = await asyncio.gather(
            tcp_connects(client.netns_path, server.ip, allowed),
            tcp_connects(client.netns_path, server.ip, blocked),
            tcp_connects(client.netns_path, gateway, host_allowed),
            tcp_connects(client.netns_path, gateway, host_blocked),
        )
        assert list(results) == [True, True, True, True]
        counters_after = await harness.networks.egress.counters(bridge=client_status.bridge_name)
        assert [c.name for c in counters_after] == [
            "spoofed",
            "cell-connections",
            "other-realm-invalid",
            "other-realm",
            "established",
            "default",
        ]
        assert counters_after[0].packets == 0, "a cell's own address is never spoofed"


async def test_default_allow_without_rules_connects_everywhere(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space, EgressRuleset(default="allow"))
    cell = await harness.cell(realm, space)
    assert isinstance(cell, CellAttachment)
    ports = four_ports()
    async with tcp_listener(status.gateway, ports):
        results = await asyncio.gather(
            *(tcp_connects(cell.netns_path, status.gateway, port) for port in ports)
        )
    assert results == [True, True, True, True]


async def test_replacing_and_removing_chains_keeps_other_spaces(harness: NetworkHarness) -> None:
    egress = harness.networks.egress
    table = harness.settings.nft_table
    policy = EgressRuleset(default="deny", rules=(EgressRule(host="localhost", ports=(80,)),))
    one, two = IPv4Network("10.99.1.0/24"), IPv4Network("10.99.2.0/24")
    await egress.apply(bridge="kk-x-one", realm="x", subnet=one, policy=policy)
    await egress.apply(
        bridge="kk-x-two", realm="x", subnet=two, policy=EgressRuleset(default="deny")
    )
    # Re-applying: no duplicate.
    await egress.apply(bridge="kk-x-one", realm="x", subnet=one, policy=policy)
    listing = json.loads(run("nft", "-j", "list", "table", "inet", table, check=True).stdout)
    rules = [i["rule"] for i in listing["nftables"] if "rule" in i]
    assert sum(r["chain"] == "egress-kk-x-one" for r in rules) == 8
    assert sum(r["chain"] == "forward" for r in rules) == 2  # oifname, iifname dispatch
    assert sum(r["chain"] == "input" for r in rules) == 1
    one_rule = next(r for r in rules if r.get("comment") == "rule-0")
    assert "127.0.0.1" in json.dumps(one_rule["expr"])

    assert await egress.remove(bridge="kk-x-one")
    assert not await egress.remove(bridge="kk-x-one")
    state = await egress.state()
    assert state.bridges == {"kk-x-two"}
    assert "egress-kk-x-one" not in state.chains
    assert await egress.remove(bridge="kk-x-two")
    assert not (await egress.state()).exists, "the last space's removal must drop the table"
    assert run("nft", "list", "table", "arp", table).returncode != 0, "and its arp table"


async def test_cells_of_another_realm_are_never_reached(harness: NetworkHarness) -> None:
    """Realms are a network boundary: a cell reaches a cell of another space of its realm,
    never one of another realm, even when every space's policy allows everything; the
    other realm's deny policy, which cannot protect its cells, is not what stops it."""
    realm, space = harness.new_names()
    other_space = harness.new_names()[1]
    other_realm, foreign_space = harness.new_names()
    allow = EgressRuleset(default="allow")
    bridge = (await harness.space(realm, space, allow)).bridge_name
    other_bridge = (await harness.space(realm, other_space, allow)).bridge_name
    foreign_bridge = (await harness.space(other_realm, foreign_space, allow)).bridge_name
    client = await harness.cell(realm, space)
    neighbour = await harness.cell(realm, other_space)
    foreign = await harness.cell(other_realm, foreign_space)
    assert isinstance(client, CellAttachment)
    assert isinstance(neighbour, CellAttachment)
    assert isinstance(foreign, CellAttachment)
    port = four_ports()[0]
    async with (
        tcp_listener("0.0.0.0", (port,), netns=neighbour.netns_path),
        tcp_listener("0.0.0.0", (port,), netns=foreign.netns_path),
    ):
        results = await asyncio.gather(
            tcp_connects(client.netns_path, neighbour.ip, port),
            tcp_connects(client.netns_path, foreign.ip, port),
            tcp_connects(foreign.netns_path, neighbour.ip, port),
        )
    assert list(results) == [True, False, False]
    counters = await harness.networks.egress.counters(bridge=bridge)
    assert {c.name: c.packets for c in counters}["other-realm"] >= 1

    # Removing the other realm's only space takes its bridge out of the sets, and its
    # realm's set, empty now, goes with it.
    assert await harness.networks.egress.remove(bridge=foreign_bridge)
    state = await harness.networks.egress.state()
    assert foreign_bridge not in state.sets["bridges"]
    assert realm_set_name(other_realm) not in state.sets
    assert state.sets[realm_set_name(realm)] == {bridge, other_bridge}
