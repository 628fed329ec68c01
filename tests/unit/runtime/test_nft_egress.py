"""The nftables JSON kukeon writes for egress policies, and how it reads listings back."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from kukeon.runtime.network import (
    EgressResolutionError,
    EgressRule,
    EgressRuleset,
    HostPrerequisiteError,
    NftEgress,
)
from kukeon.runtime.network.egress import (
    ResolvedRule,
    TableState,
    chain_name,
    parse_counters,
    parse_table_state,
    realm_set_name,
    render_apply,
    render_drop_empty_realm_sets,
    render_remove,
    resolve_ipv4,
    resolve_policy,
)


def commands(batch: dict[str, Any], verb: str, kind: str) -> list[dict[str, Any]]:
    return [c[verb][kind] for c in batch["nftables"] if verb in c and kind in c[verb]]


def space_rules(batch: dict[str, Any], chain: str) -> list[dict[str, Any]]:
    return [r for r in commands(batch, "add", "rule") if r["chain"] == chain]


NET = IPv4Network("10.88.3.0/24")
"""The space's subnet: its cells' addresses, the only sources its chain lets through."""

RULES = (
    ResolvedRule(destinations=(IPv4Network("10.0.0.0/8"),), ports=(80, 443)),
    ResolvedRule(destinations=(IPv4Network("192.0.2.7/32"), IPv4Network("192.0.2.8/32"))),
)


def in_family(batch: dict[str, Any], family: str) -> dict[str, Any]:
    """The batch's commands on ``family``'s table."""
    return {
        "nftables": [
            c for c in batch["nftables"] for o in c.values() for v in o.values()
            if v.get("family") == family
        ]
    }  # fmt: skip


def test_apply_is_one_transaction_that_replaces_the_chain() -> None:
    whole = render_apply(
        table="kukeon", bridge="kk-a-b", realm="a", subnet=NET, default="deny", rules=RULES
    )
    assert {v["family"] for c in whole["nftables"] for o in c.values() for v in o.values()} == {
        "inet",
        "arp",
    }
    batch = in_family(whole, "inet")
    assert commands(batch, "add", "table") == [{"family": "inet", "name": "kukeon"}]
    assert commands(batch, "add", "map")[0]["map"] == "verdict"
    hooks = {c["name"]: c for c in commands(batch, "add", "chain") if "hook" in c}
    assert set(hooks) == {"forward", "input"}
    assert all(c["policy"] == "accept" and c["prio"] == 0 for c in hooks.values())
    flushed = [c["name"] for c in commands(batch, "flush", "chain")]
    # to-kk-a-b: what a space bound by its leases had, gone (``render_leased_cleanup``).
    assert flushed == ["forward", "input", "egress-kk-a-b", "to-kk-a-b"]
    for hook in ("forward", "input"):
        dispatch = space_rules(batch, hook)[-1]
        assert dispatch["expr"] == [
            {"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@egress_bridges"}}
        ]
    (to_cells, _) = space_rules(batch, "forward")
    assert to_cells["expr"] == [
        {"vmap": {"key": {"meta": {"key": "oifname"}}, "data": "@cell_bridges"}}
    ]
    *sets, element, _ = commands(batch, "add", "element")
    assert [(c["name"], c["elem"]) for c in sets] == [
        ("bridges", ["kk-a-b"]),
        (realm_set_name("a"), ["kk-a-b"]),
    ]
    assert element["elem"] == [["kk-a-b", {"jump": {"target": "egress-kk-a-b"}}]]


def test_space_chain_rule_order() -> None:
    batch = render_apply(
        table="t", bridge="kk-a-b", realm="a", subnet=NET, default="deny", rules=RULES
    )
    rules = space_rules(batch, chain_name("kk-a-b"))
    assert [r.get("comment") for r in rules] == [
        "spoofed",
        "cell-connections",
        None,
        "other-realm-invalid",
        "other-realm",
        "established",
        "rule-0",
        "rule-1",
        "default",
    ]
    spoofed, connections, intra, invalid, other_realm, established, first, second, default = rules
    # First, before the same-bridge return: a source a cell wrote opens no conntrack flow.
    assert spoofed["expr"] == [
        {
            "match": {
                "op": "!=",
                "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": {"prefix": {"addr": "10.88.3.0", "len": 24}},
            }
        },
        {"counter": {"packets": 0, "bytes": 0}},
        {"drop": None},
    ]
    # Then a new connection of a cell holding its limit in conntrack (16384 by default).
    assert connections["expr"] == [
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["new"]}},
        {
            "set": {
                "op": "add",
                "elem": {"payload": {"protocol": "ip", "field": "saddr"}},
                "set": "@cell_connections",
                "stmt": [{"ct count": {"val": 16384, "inv": True}}],
            }
        },
        {"counter": {"packets": 0, "bytes": 0}},
        {"drop": None},
    ]
    assert intra["expr"] == [
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "kk-a-b"}},
        {"return": None},
    ]
    assert established["expr"][0]["match"]["right"] == ["established", "related"]
    # Towards another realm's bridge, before the established accept: a packet of no
    # connection (a forged ICMP error, on which `ct status` matches nothing) is dropped...
    oifname = {"meta": {"key": "oifname"}}
    assert invalid["expr"] == [
        {"match": {"op": "==", "left": oifname, "right": "@bridges"}},
        {"match": {"op": "!=", "left": oifname, "right": f"@{realm_set_name('a')}"}},
        {
            "match": {
                "op": "in",
                "left": {"ct": {"key": "state"}},
                "right": ["invalid", "untracked"],
            }
        },
        {"counter": {"packets": 0, "bytes": 0}},
        {"drop": None},
    ]
    # ... and so is every packet of a connection no host port DNAT'd there, related included.
    assert other_realm["expr"] == [
        {"match": {"op": "==", "left": oifname, "right": "@bridges"}},
        {"match": {"op": "!=", "left": oifname, "right": f"@{realm_set_name('a')}"}},
        {"match": {"op": "!", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
        {"counter": {"packets": 0, "bytes": 0}},
        {"drop": None},
    ]
    assert first["expr"] == [
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                "right": {"prefix": {"addr": "10.0.0.0", "len": 8}},
            }
        },
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                "right": {"set": [80, 443]},
            }
        },
        {"counter": {"packets": 0, "bytes": 0}},
        {"accept": None},
    ]
    assert second["expr"][0]["match"]["right"] == {"set": ["192.0.2.7", "192.0.2.8"]}
    assert len(second["expr"]) == 3, "no port match when the rule has no ports"
    assert default["expr"][-1] == {"drop": None}


def test_default_allow_and_single_port() -> None:
    rule = ResolvedRule(destinations=(IPv4Network("10.1.0.0/16"),), ports=(22,))
    batch = render_apply(
        table="t", bridge="b", realm="r", subnet=NET, default="allow", rules=[rule]
    )
    rules = space_rules(batch, "egress-b")
    assert rules[6]["expr"][1]["match"]["right"] == 22
    assert rules[-1]["expr"][-1] == {"accept": None}
    json.dumps(batch)  # serialisable as is


def test_remove_of_one_space_among_several() -> None:
    state = TableState(
        exists=True,
        bridges=frozenset({"b1", "b2"}),
        chains=frozenset({"forward", "input", "egress-b1", "egress-b2"}),
    )
    batch = render_remove(table="t", bridge="b1", state=state)
    assert batch is not None
    assert batch["nftables"] == [
        {"delete": {"element": {"family": "inet", "table": "t", "name": "egress_bridges",
                                "elem": ["b1"]}}},
        {"flush": {"chain": {"family": "inet", "table": "t", "name": "egress-b1"}}},
        {"delete": {"chain": {"family": "inet", "table": "t", "name": "egress-b1"}}},
    ]  # fmt: skip


def test_removing_the_last_space_drops_the_table() -> None:
    state = TableState(
        exists=True, bridges=frozenset({"b1"}), chains=frozenset({"forward", "egress-b1"})
    )
    assert render_remove(table="t", bridge="b1", state=state) == {
        "nftables": [{"delete": {"table": {"family": "inet", "name": "t"}}}]
    }


def test_removing_what_is_not_there_is_nothing() -> None:
    assert render_remove(table="t", bridge="b1", state=TableState(exists=False)) is None
    state = TableState(exists=True, bridges=frozenset({"b2"}), chains=frozenset({"egress-b2"}))
    assert render_remove(table="t", bridge="b1", state=state) is None


def test_removing_a_space_takes_its_bridge_out_of_the_bridge_sets() -> None:
    realm = realm_set_name("a")
    state = TableState(
        exists=True,
        bridges=frozenset({"b1", "b2"}),
        chains=frozenset({"egress-b1", "egress-b2"}),
        sets={"bridges": frozenset({"b1", "b2"}), realm: frozenset({"b1"})},
    )
    batch = render_remove(table="t", bridge="b1", state=state)
    assert batch is not None
    assert [c["delete"]["element"]["name"] for c in batch["nftables"][-2:]] == ["bridges", realm]
    assert all(c["delete"]["element"]["elem"] == ["b1"] for c in batch["nftables"][-2:])
    # The realm's set, empty now, goes afterwards (alone, so a failure leaves the rest done).
    after = TableState(
        exists=True,
        bridges=frozenset({"b2"}),
        chains=frozenset({"egress-b2"}),
        sets={
            "bridges": frozenset({"b2"}),
            realm: frozenset(),
            realm_set_name("c"): frozenset({"b2"}),
        },
    )
    assert render_drop_empty_realm_sets(table="t", state=after) == {
        "nftables": [{"delete": {"set": {"family": "inet", "table": "t", "name": realm}}}]
    }
    assert render_drop_empty_realm_sets(table="t", state=state) is None


def test_each_realm_has_a_short_set_of_its_own() -> None:
    names = {realm_set_name(realm) for realm in ("a", "b", "x" * 63)}
    assert len(names) == 3
    assert all(len(name) <= 31 for name in names)  # NFT_SET_MAXNAMELEN of older kernels


LISTING = {
    "nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "t", "handle": 4}},
        {"map": {"family": "inet", "name": "egress_bridges", "table": "t", "type": "ifname",
                 "map": "verdict", "elem": [["b1", {"jump": {"target": "egress-b1"}}]]}},
        {"set": {"family": "inet", "name": "bridges", "table": "t", "type": "ifname",
                 "elem": ["b1"]}},
        {"set": {"family": "inet", "name": "realm-0123456789ab", "table": "t", "type": "ifname"}},
        {"set": {"family": "inet", "name": "ports_bridges", "table": "t", "type": "ifname",
                 "elem": ["b1"]}},
        {"chain": {"family": "inet", "table": "t", "name": "forward", "hook": "forward"}},
        {"chain": {"family": "inet", "table": "t", "name": "egress-b1"}},
        {"rule": {"family": "inet", "table": "t", "chain": "egress-b1",
                  "expr": [{"return": None}]}},
        {"rule": {"family": "inet", "table": "t", "chain": "egress-b1", "comment": "established",
                  "expr": [{"counter": {"packets": 9, "bytes": 900}}, {"accept": None}]}},
        {"rule": {"family": "inet", "table": "t", "chain": "egress-b1", "comment": "rule-0",
                  "expr": [{"counter": {"packets": 3, "bytes": 180}}, {"accept": None}]}},
        {"rule": {"family": "inet", "table": "t", "chain": "egress-b1", "comment": "default",
                  "expr": [{"counter": {"packets": 2, "bytes": 120}}, {"drop": None}]}},
    ]
}  # fmt: skip


def test_listing_parsers() -> None:
    state = parse_table_state(LISTING)
    assert state.exists
    assert state.bridges == {"b1"}
    assert state.chains == {"forward", "egress-b1"}
    assert state.sets == {"bridges": {"b1"}, "realm-0123456789ab": frozenset()}
    assert parse_table_state(None) == TableState(exists=False)
    counters = parse_counters(LISTING, chain="egress-b1")
    assert [(c.name, c.packets, c.bytes) for c in counters] == [
        ("established", 9, 900),
        ("rule-0", 3, 180),
        ("default", 2, 120),
    ]
    assert parse_counters(LISTING, chain="egress-other") == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"cidr": IPv4Network("10.0.0.0/8"), "host": "x"}, "exactly one"),
        ({"host": " "}, "empty"),
        ({"host": "x", "ports": (0,)}, "outside"),
        ({"host": "x", "ports": (65536,)}, "outside"),
    ],
)
def test_rule_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EgressRule(**kwargs)


async def test_host_names_resolve_at_apply_time() -> None:
    async def resolver(host: str) -> Sequence[IPv4Address]:
        return {"api.example": [IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")]}.get(host, [])

    policy = EgressRuleset(
        default="deny",
        rules=(
            EgressRule(host="api.example", ports=(443, 443, 80)),
            EgressRule(cidr=IPv4Network("10.0.0.0/8")),
        ),
    )
    resolved = await resolve_policy(policy, resolver=resolver)
    assert resolved[0].destinations == (
        IPv4Network("192.0.2.1/32"),
        IPv4Network("192.0.2.2/32"),
    )
    assert resolved[0].ports == (80, 443)
    assert resolved[1].destinations == (IPv4Network("10.0.0.0/8"),)
    with pytest.raises(EgressResolutionError, match=r"`nowhere\.example`"):
        await resolve_policy(
            EgressRuleset(rules=(EgressRule(host="nowhere.example"),)), resolver=resolver
        )


async def test_system_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IPv4Address("127.0.0.1") in await resolve_ipv4("localhost")  # from /etc/hosts

    async def failing(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", failing)
    with pytest.raises(EgressResolutionError, match="not known"):
        await resolve_ipv4("nowhere.example")


async def test_missing_nft_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    egress = NftEgress(table="t")
    with pytest.raises(HostPrerequisiteError, match=r"`nft`.*nftables"):
        await egress.apply(bridge="b", realm="r", subnet=NET, policy=EgressRuleset())


def test_ipv6_cidr_rules_match_ip6_daddr() -> None:
    rule = ResolvedRule(destinations=(IPv6Network("fd00::/8"),), ports=(443,))
    batch = render_apply(table="t", bridge="b", realm="r", subnet=NET, default="deny", rules=[rule])
    first = space_rules(batch, "egress-b")[6]
    assert first["expr"][0]["match"]["left"] == {"payload": {"protocol": "ip6", "field": "daddr"}}
    assert first["expr"][0]["match"]["right"] == {"prefix": {"addr": "fd00::", "len": 8}}


def test_a_cell_connections_limit_of_0_writes_no_rule() -> None:
    limited = render_apply(
        table="t", bridge="b", realm="r", subnet=NET, default="allow", rules=[],
        cell_connections=5,
    )  # fmt: skip
    unlimited = render_apply(
        table="t", bridge="b", realm="r", subnet=NET, default="allow", rules=[],
        cell_connections=0,
    )  # fmt: skip
    assert space_rules(limited, "egress-b")[1]["expr"][1]["set"]["stmt"] == [
        {"ct count": {"val": 5, "inv": True}}
    ]
    assert "cell-connections" not in [r.get("comment") for r in space_rules(unlimited, "egress-b")]
