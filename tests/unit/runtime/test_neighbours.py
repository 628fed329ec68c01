"""The neighbour bound's nft JSON: a space's bridge takes ARP and IPv4 from, and routes to,
only its cells' leased addresses (its subnet for a space the CNI plugins attach)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from kukeon.runtime.network.egress import chain_name, render_apply
from kukeon.runtime.network.leases import leased
from kukeon.runtime.network.neighbours import (
    BoundState,
    parse_bound_state,
    render_leased_sets,
    render_unbound,
)

NET = IPv4Network("10.88.3.0/24")
CELLS = [IPv4Address("10.88.3.9"), IPv4Address("10.88.3.2")]


def rules_of(batch: dict[str, Any], family: str, chain: str) -> list[list[dict[str, Any]]]:
    return [
        c["add"]["rule"]["expr"]
        for c in batch["nftables"]
        if "rule" in c.get("add", {})
        and c["add"]["rule"]["family"] == family
        and c["add"]["rule"]["chain"] == chain
    ]


def objects(batch: dict[str, Any], verb: str, kind: str) -> list[tuple[str, str]]:
    return [
        (c[verb][kind]["family"], c[verb][kind].get("name", ""))
        for c in batch["nftables"]
        if kind in c.get(verb, {})
    ]


def apply(leased: list[IPv4Address] | None) -> dict[str, Any]:
    return render_apply(
        table="t", bridge="kk-a-b", realm="a", subnet=NET, default="allow", rules=(),
        leased=leased,
    )  # fmt: skip


def test_a_leased_space_takes_only_its_cells_addresses() -> None:
    batch = apply(CELLS)
    sets = [c["add"]["element"] for c in batch["nftables"] if "element" in c.get("add", {})]
    leased_sets = [(s["family"], s["elem"]) for s in sets if s["name"] == "cells-kk-a-b"]
    assert leased_sets == [
        ("inet", ["10.88.3.2", "10.88.3.9"]),
        ("arp", ["10.88.3.2", "10.88.3.9"]),
    ]
    assert ("inet", "cells-kk-a-b") in objects(batch, "flush", "set")
    (arp,) = rules_of(batch, "arp", "arp-kk-a-b")
    sender = {"payload": {"protocol": "arp", "field": "saddr ip"}}
    assert arp == [
        {"match": {"op": "!=", "left": sender, "right": "@cells-kk-a-b"}},
        {"counter": {"packets": 0, "bytes": 0}},
        {"drop": None},
    ]
    (towards,) = rules_of(batch, "inet", "to-kk-a-b")
    assert towards[0] == {
        "match": {"op": "==", "left": {"meta": {"key": "pkttype"}}, "right": "host"}
    }
    assert towards[1]["match"]["right"] == "@cells-kk-a-b"
    spoofed = rules_of(batch, "inet", chain_name("kk-a-b"))[0]
    assert spoofed[0]["match"]["right"] == "@cells-kk-a-b"
    # The sets come before the chains that refer to them; nothing of the subnet bound's.
    commands = [next(iter(c.values())) for c in batch["nftables"]]
    first_set = next(
        i for i, c in enumerate(commands) if c.get("set", {}).get("name") == "cells-kk-a-b"
    )
    first_rule = next(
        i for i, c in enumerate(commands) if "@cells-kk-a-b" in json.dumps(c.get("rule"))
    )
    assert first_set < first_rule
    assert not objects(batch, "delete", "set")
    assert ("inet", "cell_bridges") in objects(batch, "add", "map")
    assert ("arp", "arp_bridges") in objects(batch, "add", "map")


def test_a_space_without_cells_takes_nothing() -> None:
    batch = apply([])
    assert not [
        c
        for c in batch["nftables"]
        if c.get("add", {}).get("element", {}).get("name") == "cells-kk-a-b"
    ]
    assert ("arp", "cells-kk-a-b") in objects(batch, "add", "set")


def test_a_cni_space_keeps_its_subnet_and_drops_what_leases_made() -> None:
    batch = apply(None)
    subnet = {"prefix": {"addr": "10.88.3.0", "len": 24}}
    (arp,) = rules_of(batch, "arp", "arp-kk-a-b")
    assert arp[0]["match"]["right"] == subnet
    assert rules_of(batch, "inet", chain_name("kk-a-b"))[0][0]["match"]["right"] == subnet
    assert not rules_of(batch, "inet", "to-kk-a-b")
    # Each made then deleted: gone whether it was there (cniConfigPath set since) or not.
    assert objects(batch, "delete", "set") == [("inet", "cells-kk-a-b"), ("arp", "cells-kk-a-b")]
    assert objects(batch, "delete", "chain") == [("inet", "to-kk-a-b")]
    # The set is deleted after the egress chain that referred to it is emptied.
    egress_flush = batch["nftables"].index(
        {"flush": {"chain": {"family": "inet", "table": "t", "name": "egress-kk-a-b"}}}
    )
    set_delete = batch["nftables"].index(
        {"delete": {"set": {"family": "inet", "table": "t", "name": "cells-kk-a-b"}}}
    )
    assert egress_flush < set_delete


def test_the_leased_sets_are_replaced_whole() -> None:
    commands = render_leased_sets("t", "kk-a-b", [IPv4Address("10.0.0.5")])
    verbs = [
        (verb, kind, o["family"])
        for c in commands
        for verb, v in c.items()
        for kind, o in v.items()
    ]
    assert verbs == [
        ("add", "table", "inet"), ("add", "set", "inet"), ("flush", "set", "inet"),
        ("add", "element", "inet"),
        ("add", "table", "arp"), ("add", "set", "arp"), ("flush", "set", "arp"),
        ("add", "element", "arp"),
    ]  # fmt: skip


LISTING = {
    "nftables": [
        {"table": {"family": "arp", "name": "t"}},
        {"set": {"family": "arp", "name": "cells-kk-a-b", "table": "t", "type": "ipv4_addr"}},
        {
            "map": {
                "family": "arp", "name": "arp_bridges", "table": "t", "type": "ifname",
                "map": "verdict", "elem": [["kk-a-b", {"jump": {"target": "arp-kk-a-b"}}]],
            }
        },
        {"chain": {"family": "arp", "table": "t", "name": "arp-kk-a-b"}},
        {"chain": {"family": "arp", "table": "t", "name": "input"}},
    ]
}  # fmt: skip


def test_the_last_bridge_takes_the_arp_table_with_it() -> None:
    state = parse_bound_state(LISTING, dispatch_map="arp_bridges")
    assert state == BoundState(
        True, frozenset({"kk-a-b"}), frozenset({"arp-kk-a-b", "input"}), frozenset({"cells-kk-a-b"})
    )
    last = render_unbound(family="arp", table="t", bridge="kk-a-b", state=state, whole_table=False)
    assert last == [{"delete": {"table": {"family": "arp", "name": "t"}}}]
    other = BoundState(True, state.bridges | {"kk-o"}, state.chains, state.sets)
    kept = render_unbound(family="arp", table="t", bridge="kk-a-b", state=other, whole_table=False)
    assert [next(iter(c)) for c in kept] == ["delete", "flush", "delete", "delete"]
    assert kept[-1] == {"delete": {"set": {"family": "arp", "table": "t", "name": "cells-kk-a-b"}}}
    gone = parse_bound_state(None, dispatch_map="arp_bridges")
    assert (
        render_unbound(family="arp", table="t", bridge="kk-a-b", state=gone, whole_table=True) == []
    )


def test_leased_reads_only_lease_files(tmp_path: Path) -> None:
    for name in ("10.0.0.3", "10.0.0.2", "lock", "last_reserved_ip.0", ".reserving-10.0.0.4"):
        (tmp_path / name).write_text("x\r\neth0")
    assert leased(tmp_path) == [IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")]
    assert leased(tmp_path / "missing") == []
