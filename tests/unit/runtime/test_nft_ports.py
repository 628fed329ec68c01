"""Published ports: the nftables transactions kukeon writes, how it reads them back, and
(as root, in a private network namespace) that the kernel takes them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

import kukeon.runtime.network.ports as ports_module
from kukeon.runtime.network.ports import (
    BASE_CHAINS,
    BRIDGE_SET,
    DNAT_CHAIN,
    GUARD_CHAIN,
    CellPorts,
    HostPort,
    NftPorts,
    PortConflictError,
    PortsTable,
    Publication,
    cell_chain,
    find_conflict,
    find_host_listener,
    needs_a_host_address,
    parse_host_sockets,
    parse_key,
    parse_ports_table,
    render_publish,
    render_release,
    without_host_address,
)

CELL_IP = IPv4Address("10.88.0.5")


def cell(
    cell_id: str = "kukeon_r_s_st_web", *publications: Publication, bridge: str = "kk-r-s"
) -> CellPorts:
    return CellPorts(
        cell_id=cell_id,
        owner="cell " + "/".join(cell_id.split("_")[1:]),
        address=CELL_IP,
        bridge=bridge,
        publications=publications or (Publication("tcp", 8080, 80),),
    )


def commands(batch: dict[str, Any], verb: str, kind: str) -> list[dict[str, Any]]:
    return [c[verb][kind] for c in batch["nftables"] if verb in c and kind in c[verb]]


def test_a_wildcard_publication_is_ipv4_dnat_to_the_cell() -> None:
    batch = render_publish(table="t", cell=cell(), state=PortsTable(exists=False))
    chain = cell_chain("kukeon_r_s_st_web")
    rules = [r for r in commands(batch, "add", "rule") if r["chain"] == chain]
    assert len(rules) == 1
    assert rules[0]["comment"] == "tcp *:8080"
    assert rules[0]["expr"] == [
        {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                   "right": 8080}},
        {"counter": {"packets": 0, "bytes": 0}},
        {"dnat": {"family": "ip", "addr": "10.88.0.5", "port": 80}},
    ]  # fmt: skip
    jumps = [r for r in commands(batch, "add", "rule") if r["chain"] == DNAT_CHAIN]
    assert jumps == [
        {"family": "inet", "table": "t", "chain": DNAT_CHAIN, "comment": "cell r/s/st/web",
         "expr": [{"jump": {"target": chain}}]}
    ]  # fmt: skip
    assert commands(batch, "add", "element") == [
        {"family": "inet", "table": "t", "name": BRIDGE_SET, "elem": ["kk-r-s"]}
    ]
    # The chain is emptied and refilled in the same transaction, before the jump to it.
    verbs = [next(iter(c)) for c in batch["nftables"]]
    flush_at = next(
        i for i, c in enumerate(batch["nftables"])
        if c.get("flush", {}).get("chain", {}).get("name") == chain
    )  # fmt: skip
    jump_at = next(
        i for i, c in enumerate(batch["nftables"])
        if c.get("add", {}).get("rule", {}).get("chain") == DNAT_CHAIN
    )  # fmt: skip
    assert flush_at < jump_at
    assert "delete" not in verbs


def test_an_address_and_udp_match_that_address() -> None:
    udp = Publication("udp", 53, 5353, IPv4Address("127.0.0.1"))
    batch = render_publish(table="t", cell=cell("kukeon_r_s_st_dns", udp), state=PortsTable(True))
    rule = next(r for r in commands(batch, "add", "rule") if r.get("comment") == "udp 127.0.0.1:53")
    assert rule["expr"][0] == {
        "match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                  "right": "127.0.0.1"}
    }  # fmt: skip
    assert rule["expr"][-1] == {"dnat": {"family": "ip", "addr": "10.88.0.5", "port": 5353}}


def test_hooked_chains_translate_only_local_destinations_and_guard_loopback() -> None:
    batch = render_publish(table="t", cell=cell(), state=PortsTable(False))
    hooked = {c["name"]: c for c in commands(batch, "add", "chain") if "hook" in c}
    assert {(c["hook"], c["type"], c["prio"]) for c in hooked.values()} == {
        ("prerouting", "nat", -100),
        ("output", "nat", -100),
        ("postrouting", "nat", 100),
        ("prerouting", "filter", -300),
    }
    rules = commands(batch, "add", "rule")
    pre = [r for r in rules if r["chain"] == "ports-prerouting"]
    assert pre[0]["expr"][0]["match"]["left"] == {"fib": {"result": "type", "flags": ["daddr"]}}
    guard = [r for r in rules if r["chain"] == "ports-guard"]
    assert all(r["expr"][-1] == {"drop": None} for r in guard)
    assert len(guard) == 2
    # Every hooked chain is flushed before its rules are added again: one copy each.
    flushed = {c["name"] for c in commands(batch, "flush", "chain")}
    assert set(BASE_CHAINS) <= flushed


def test_an_existing_jump_is_kept() -> None:
    chain = cell_chain("kukeon_r_s_st_web")
    state = PortsTable(True, frozenset({chain}), jumps={chain: (7,)})
    batch = render_publish(table="t", cell=cell(), state=state)
    assert not [r for r in commands(batch, "add", "rule") if r["chain"] == DNAT_CHAIN]


def test_release_removes_the_cell_and_the_shared_chains_with_the_last() -> None:
    web, other = cell_chain("kukeon_r_s_st_web"), cell_chain("kukeon_r_s_st_db")
    shared = {*BASE_CHAINS, DNAT_CHAIN}
    state = PortsTable(True, frozenset({web, other, *shared}), jumps={web: (7,), other: (9,)})
    batch = render_release(table="t", cell_id="kukeon_r_s_st_web", state=state)
    assert batch is not None
    assert commands(batch, "delete", "rule") == [
        {"family": "inet", "table": "t", "chain": DNAT_CHAIN, "handle": 7}
    ]
    assert [c["name"] for c in commands(batch, "delete", "chain")] == [web]
    last = PortsTable(True, frozenset({web, *shared}), jumps={web: (7,)})
    batch = render_release(table="t", cell_id="kukeon_r_s_st_web", state=last)
    assert batch is not None
    assert {c["name"] for c in commands(batch, "delete", "chain")} == {web, *shared}
    assert commands(batch, "delete", "set") == [
        {"family": "inet", "table": "t", "name": BRIDGE_SET}
    ]
    assert render_release(table="t", cell_id="kukeon_r_s_st_x", state=last) is None
    assert render_release(table="t", cell_id="x", state=PortsTable(False)) is None


def test_a_long_cell_id_is_hashed_into_a_chain_name() -> None:
    long_id = "kukeon_" + "_".join(["a" * 63] * 4)
    assert len(cell_chain(long_id)) < 64
    assert cell_chain(long_id) == cell_chain(long_id)
    assert cell_chain("kukeon_r") == "ports-c-kukeon_r"


@pytest.mark.parametrize(
    ("mine", "held", "conflict"),
    [
        (Publication("tcp", 8080, 80), "tcp *:8080", True),
        (Publication("tcp", 8080, 80), "udp *:8080", False),
        (Publication("tcp", 8080, 80), "tcp *:8081", False),
        (Publication("tcp", 8080, 80), "tcp 127.0.0.1:8080", True),
        (Publication("tcp", 8080, 80, IPv4Address("127.0.0.1")), "tcp *:8080", True),
        (Publication("tcp", 8080, 80, IPv4Address("127.0.0.1")), "tcp 10.0.0.1:8080", False),
        (Publication("tcp", 8080, 80, IPv4Address("10.0.0.1")), "tcp 10.0.0.1:8080", True),
    ],
)
def test_overlap(mine: Publication, held: str, conflict: bool) -> None:
    parsed = parse_key(held)
    assert parsed is not None
    assert mine.overlaps(parsed) is conflict


def test_parse_key_ignores_foreign_comments() -> None:
    assert parse_key("established") is None
    assert parse_key("tcp nowhere:80") is None
    assert parse_key("sctp *:80") is None


def test_the_table_listing_names_the_holder() -> None:
    db = cell_chain("kukeon_r_s_st_db")
    listing = {
        "nftables": [
            {"metainfo": {}},
            {"table": {"family": "inet", "name": "t"}},
            {"chain": {"family": "inet", "table": "t", "name": DNAT_CHAIN}},
            {"chain": {"family": "inet", "table": "t", "name": db}},
            {"rule": {"chain": DNAT_CHAIN, "handle": 4, "comment": "cell r/s/st/db",
                      "expr": [{"jump": {"target": db}}]}},
            {"rule": {"chain": db, "handle": 5, "comment": "tcp *:8080", "expr": []}},
            {"rule": {"chain": "egress-x", "handle": 6, "comment": "tcp *:9", "expr": []}},
        ]
    }  # fmt: skip
    state = parse_ports_table(listing)
    assert state.jumps == {db: (4,)}
    assert state.held == {db: ("tcp *:8080",)}
    conflict = find_conflict(state, cell())
    assert isinstance(conflict, PortConflictError)
    assert "cell r/s/st/db" in str(conflict)
    assert "8080/tcp" in str(conflict)
    # Its own chain is never a conflict: a republish replaces it.
    assert find_conflict(state, cell("kukeon_r_s_st_db")) is None
    assert parse_ports_table(None) == PortsTable(exists=False)


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   2: 0100007F:EC5E 0100007F:A1B1 01 00000000:00000000 00:00000000 00000000     0
"""
TCP6 = """  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A
   1: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A
   2: 000080FE00000000FF005452DB0E0A0C:1F92 00000000000000000000000000000000:0000 0A
"""


def test_host_sockets_from_proc_net() -> None:
    assert parse_host_sockets("tcp", TCP) == [
        HostPort("tcp", 2379, IPv4Address("127.0.0.1")),  # etcd's, on loopback
        HostPort("tcp", 22, None),  # sshd on every address; the connected socket is not
    ]
    assert parse_host_sockets("tcp", TCP6) == [
        HostPort("tcp", 8080, None),  # dual-stack [::]
        HostPort("tcp", 8081, IPv4Address("127.0.0.1")),  # ::ffff:127.0.0.1
    ]  # an IPv6-only address is no IPv4 listener


def test_a_publication_on_an_address_the_node_lacks_is_found() -> None:
    everywhere = Publication("tcp", 80, 80)
    loopback = Publication("tcp", 81, 80, IPv4Address("127.0.0.2"))
    own = Publication("tcp", 82, 80, IPv4Address("192.0.2.1"))
    absent = Publication("udp", 83, 53, IPv4Address("198.51.100.9"))
    addresses = frozenset({IPv4Address("192.0.2.1"), IPv4Address("127.0.0.1")})
    assert not needs_a_host_address([everywhere, loopback])
    assert needs_a_host_address([everywhere, own])
    assert without_host_address([everywhere, loopback, own], addresses) == ()
    assert without_host_address([everywhere, own, absent], addresses) == (absent,)
    assert without_host_address([absent], frozenset()) == (absent,)


def test_a_port_a_process_of_the_node_listens_on_is_not_taken() -> None:
    sockets = parse_host_sockets("tcp", TCP)
    etcd = cell("kukeon_r_s_st_web", Publication("tcp", 2379, 2379))
    conflict = find_host_listener(sockets, etcd, PortsTable(True))
    assert conflict is not None
    assert "in use" in str(conflict)
    assert "127.0.0.1:2379" in str(conflict)
    elsewhere = cell("kukeon_r_s_st_web", Publication("tcp", 2379, 80, IPv4Address("10.0.0.1")))
    assert find_host_listener(sockets, elsewhere, PortsTable(True)) is None
    assert find_host_listener(sockets, cell(), PortsTable(True)) is None
    # Already published by the cell (a process came later): kept, not failed again.
    chain = cell_chain("kukeon_r_s_st_web")
    mine = PortsTable(True, frozenset({chain}), held={chain: ("tcp *:2379",)})
    assert find_host_listener(sockets, etcd, mine) is None


# --- the kernel takes the transactions (root, a private network namespace) ------------------

needs_root_nft = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("unshare") is None,
    reason="needs root, nft and unshare",
)


def _nft_in(netns_pid: int, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["nsenter", f"--net=/proc/{netns_pid}/ns/net", "nft", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_root_nft
def test_publish_conflict_and_release_in_a_private_netns() -> None:
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        pid = holder.pid
        for _ in range(100):
            if os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            subprocess.run(["sleep", "0.02"], check=True)

        def state() -> PortsTable:
            done = subprocess.run(
                ["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "-j", "list", "table", "inet", "t"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return parse_ports_table(json.loads(done.stdout) if done.returncode == 0 else None)

        web = cell("kukeon_r_s_st_web", Publication("tcp", 8080, 80), Publication("udp", 53, 53))
        _nft_in(
            pid,
            "-j",
            "-f",
            "-",
            stdin=json.dumps(render_publish(table="t", cell=web, state=state())),
        )
        # Again, as every pass does: one jump, the chain replaced.
        _nft_in(
            pid,
            "-j",
            "-f",
            "-",
            stdin=json.dumps(render_publish(table="t", cell=web, state=state())),
        )
        now = state()
        chain = cell_chain("kukeon_r_s_st_web")
        assert len(now.jumps[chain]) == 1
        assert sorted(now.held[chain]) == ["tcp *:8080", "udp *:53"]
        db = cell("kukeon_r_s_st_db", Publication("tcp", 8080, 80, IPv4Address("127.0.0.1")))
        assert find_conflict(now, db) is not None
        release = render_release(table="t", cell_id="kukeon_r_s_st_web", state=now)
        _nft_in(pid, "-j", "-f", "-", stdin=json.dumps(release))
        after = state()
        assert after.exists
        assert not after.cell_chains()
        assert not {*BASE_CHAINS, DNAT_CHAIN} & after.chains
    finally:
        holder.kill()
        holder.wait()


def test_the_last_release_turns_route_localnet_off_before_the_guard_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Before, ``route_localnet`` stayed 1 on the bridges once ``ports-guard`` went with the
    last publication: their cells reached what listens on the host's 127.0.0.1 only."""
    web, db = cell_chain("kukeon_r_s_st_web"), cell_chain("kukeon_r_s_st_db")
    listing: dict[str, Any] = {
        "nftables": [
            {"table": {"family": "inet", "name": "t"}},
            *({"chain": {"family": "inet", "table": "t", "name": name}} for name in BASE_CHAINS),
            {"chain": {"family": "inet", "table": "t", "name": web}},
            {"set": {"family": "inet", "table": "t", "name": BRIDGE_SET, "type": "ifname",
                     "elem": ["kk-r-s", "kk-r-gone"]}},
            {"set": {"family": "inet", "table": "t", "name": "bridges", "elem": ["kk-other"]}},
        ]
    }  # fmt: skip
    state = parse_ports_table(listing)
    assert state.bridges == {"kk-r-s", "kk-r-gone"}
    assert state.releases_the_guard("kukeon_r_s_st_web")
    with_db = parse_ports_table(
        {"nftables": [*listing["nftables"], {"chain": {"table": "t", "name": db}}]}
    )
    assert not with_db.releases_the_guard("kukeon_r_s_st_web")  # the guard stays for db

    sysctl = tmp_path / "conf"
    for bridge in ("kk-r-s", "kk-other"):
        (sysctl / bridge).mkdir(parents=True)
        (sysctl / bridge / "route_localnet").write_text("1\n")
    monkeypatch.setattr(ports_module, "_SYSCTL_DIR", sysctl)
    events: list[str] = []

    async def listing_of(_self: NftPorts) -> dict[str, Any]:
        return listing

    async def apply(_self: NftPorts, batch: dict[str, Any], *, action: str) -> None:
        setting = (sysctl / "kk-r-s" / "route_localnet").read_text().strip()
        events.append(f"apply with route_localnet {setting}")
        assert {"delete": {"chain": {"family": "inet", "table": "t", "name": GUARD_CHAIN}}} in (
            batch["nftables"]
        )

    monkeypatch.setattr(NftPorts, "_list", listing_of)
    monkeypatch.setattr(NftPorts, "_apply", apply)
    assert asyncio.run(NftPorts(table="t").release("kukeon_r_s_st_web"))
    assert events == ["apply with route_localnet 0"]  # off before the guard went
    # A bridge of the set that is gone is skipped; one not in the set is not ours to touch.
    assert (sysctl / "kk-other" / "route_localnet").read_text() == "1\n"


def test_at_start_unguarded_bridges_left_open_are_closed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What an older kukeond left: a space bridge at route_localnet 1 with no guard."""
    listing = {
        "nftables": [
            {"set": {"table": "t", "name": "bridges", "elem": ["kk-old", "kk-pub", "kk-shut"]}},
            {"set": {"table": "t", "name": BRIDGE_SET, "elem": ["kk-pub"]}},
            {"chain": {"table": "t", "name": GUARD_CHAIN}},
            *[{"rule": {"table": "t", "chain": GUARD_CHAIN, "expr": [{"drop": None}]}}] * 2,
        ]
    }
    sysctl = tmp_path / "conf"
    for bridge, value in (("kk-old", "1"), ("kk-pub", "1"), ("kk-shut", "0"), ("lo", "1")):
        (sysctl / bridge).mkdir(parents=True)
        (sysctl / bridge / "route_localnet").write_text(value + "\n")
    monkeypatch.setattr(ports_module, "_SYSCTL_DIR", sysctl)

    async def listing_of(_self: NftPorts) -> dict[str, Any]:
        return listing

    monkeypatch.setattr(NftPorts, "_list", listing_of)
    assert asyncio.run(NftPorts(table="t").close_unguarded()) == ["kk-old"]
    settings = {
        b: (sysctl / b / "route_localnet").read_text().strip() for b in ("kk-old", "kk-pub", "lo")
    }
    # kk-pub publishes to loopback (guarded); lo is no bridge of the table.
    assert settings == {"kk-old": "0", "kk-pub": "1", "lo": "1"}


def test_a_guard_that_lost_a_rule_or_a_table_that_went_guards_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After a ruleset flush the table is gone, and with it the guard and the set of the
    node's bridges: the bridges named by the caller (its spaces) are closed all the same."""
    guard_rule = {"rule": {"table": "t", "chain": GUARD_CHAIN, "expr": [{"drop": None}]}}
    whole = [
        {"chain": {"table": "t", "name": GUARD_CHAIN}},
        {"set": {"table": "t", "name": BRIDGE_SET, "elem": ["kk-pub"]}},
        guard_rule,
        guard_rule,
    ]
    assert parse_ports_table({"nftables": whole}).guarded == {"kk-pub"}
    assert not parse_ports_table({"nftables": whole[:-1]}).guarded  # one drop left
    sysctl = tmp_path / "conf"
    for bridge in ("kk-pub", "kk-other"):
        (sysctl / bridge).mkdir(parents=True)
        (sysctl / bridge / "route_localnet").write_text("1\n")
    monkeypatch.setattr(ports_module, "_SYSCTL_DIR", sysctl)
    listings: list[dict[str, Any] | None] = [{"nftables": whole}, None]

    async def listing_of(_self: NftPorts) -> dict[str, Any] | None:
        return listings.pop(0)

    monkeypatch.setattr(NftPorts, "_list", listing_of)
    ports = NftPorts(table="t")
    assert asyncio.run(ports.close_unguarded(["kk-pub", "kk-gone"])) == []
    assert asyncio.run(ports.close_unguarded(["kk-pub", "kk-gone"])) == ["kk-pub"]
    assert (sysctl / "kk-pub" / "route_localnet").read_text() == "0\n"
    assert (sysctl / "kk-other" / "route_localnet").read_text() == "1\n"  # not named
