"""A space's masquerade in its nftables table: what the bridge plugin's ``ipMasq`` did per cell.

For a space whose cells kukeond attaches itself (``inprocess``), one chain per space in the
table ``egress`` owns replaces the per-cell ``CNI-…`` chains the bridge plugin put in
iptables' ``nat`` table, with the same rule: traffic from the space's subnet that entered
from its bridge is masqueraded unless bound for the subnet itself or multicast::

    map masquerade_bridges { type ifname : verdict; "<bridge>" : jump masq-<bridge> }
    chain masquerade { type nat hook postrouting priority srcnat; iifname vmap @masquerade_bridges }
    chain masq-<bridge> {
        ip saddr <subnet> ip daddr != <subnet> ip daddr != 224.0.0.0/4 counter masquerade
    }

It is written in the same nft transaction as the space's egress chain (``NftEgress.apply``)
and removed with it (``NftEgress.remove``). Pure rendering only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from ipaddress import IPv4Network
from typing import Any

from kukeon.runtime.network.nfttable import map_keys

log = logging.getLogger(__name__)

MASQUERADE_MAP = "masquerade_bridges"
MASQUERADE_CHAIN = "masquerade"
_MULTICAST = IPv4Network("224.0.0.0/4")
_FAMILY = "inet"
_SRCNAT = 100


def masquerade_chain(bridge: str) -> str:
    return f"masq-{bridge}"


def _ref(**extra: Any) -> dict[str, Any]:
    return {"family": _FAMILY, **extra}


def _prefix(net: IPv4Network) -> dict[str, Any]:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _daddr(op: str, net: IPv4Network) -> dict[str, Any]:
    left = {"payload": {"protocol": "ip", "field": "daddr"}}
    return {"match": {"op": op, "left": left, "right": _prefix(net)}}


def render_masquerade(*, table: str, bridge: str, subnet: IPv4Network) -> list[dict[str, Any]]:
    """The commands that install (or replace) the space's masquerade (pure)."""
    chain = masquerade_chain(bridge)
    base = _ref(
        table=table,
        name=MASQUERADE_CHAIN,
        type="nat",
        hook="postrouting",
        prio=_SRCNAT,
        policy="accept",
    )
    dispatch = [{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": f"@{MASQUERADE_MAP}"}}]
    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    rule = [
        {"match": {"op": "==", "left": saddr, "right": _prefix(subnet)}},
        _daddr("!=", subnet),
        _daddr("!=", _MULTICAST),
        {"counter": {"packets": 0, "bytes": 0}},
        {"masquerade": None},
    ]
    return [
        {"add": {"map": _ref(table=table, name=MASQUERADE_MAP, type="ifname", map="verdict")}},
        {"add": {"chain": base}},
        {"flush": {"chain": _ref(table=table, name=MASQUERADE_CHAIN)}},
        {"add": {"rule": _ref(table=table, chain=MASQUERADE_CHAIN, expr=dispatch)}},
        {"add": {"chain": _ref(table=table, name=chain)}},
        {"flush": {"chain": _ref(table=table, name=chain)}},
        {"add": {"rule": _ref(table=table, chain=chain, expr=rule)}},
        {
            "add": {
                "element": _ref(
                    table=table, name=MASQUERADE_MAP, elem=[[bridge, {"jump": {"target": chain}}]]
                )
            }
        },
    ]


def masquerading_bridges(listing: Mapping[str, Any]) -> frozenset[str]:
    """The bridges in the masquerade map of an ``nft -j list table`` answer."""
    return map_keys(listing, MASQUERADE_MAP)


def render_unmasquerade(
    *, table: str, bridge: str, bridges: frozenset[str], chains: frozenset[str]
) -> list[dict[str, Any]]:
    """The commands that remove the space's masquerade, given what the table holds (pure)."""
    chain = masquerade_chain(bridge)
    commands: list[dict[str, Any]] = []
    if bridge in bridges:
        commands.append(
            {"delete": {"element": _ref(table=table, name=MASQUERADE_MAP, elem=[bridge])}}
        )
    if chain in chains:
        commands += [
            {"flush": {"chain": _ref(table=table, name=chain)}},
            {"delete": {"chain": _ref(table=table, name=chain)}},
        ]
    return commands
