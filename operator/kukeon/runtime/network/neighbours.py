"""A space's bound on the host's neighbour (ARP) table: entries for its cells' addresses only.

The host's IPv4 neighbour table is one for the whole host (``gc_thresh3``, 1,024 by
default; an entry younger than 5 s is not forced out), and once full the host resolves no
new neighbour on any interface, its LAN gateway included. A cell (every container has
``CAP_NET_RAW``) made an entry on its bridge with each ARP request for the gateway from a
new sender address, with each packet routed through the host to an unused address of a
space's subnet, and with each packet the host answered from an unused source of its subnet.
So the host takes from a space's bridge, and routes to it, only addresses leased to its
cells: at most one entry per leased address (a cell's interface), as many as the cells.

Rendered here, applied with the space's egress chain (``egress``) in the same transaction,
in its ``inet`` table and in an ``arp`` table of the same name (nft's ``inet`` family never
sees ARP)::

    inet <table>:
      set cells-<bridge> { type ipv4_addr; }     # the addresses leased to its cells
      map cell_bridges { type ifname : verdict; "<bridge>" : jump to-<bridge> }
      chain forward { oifname vmap @cell_bridges; iifname vmap @egress_bridges }
      chain to-<bridge> { meta pkttype host ip daddr != @cells-<bridge> counter drop }
      (its egress chain's ``spoofed``: ip saddr != @cells-<bridge>)
    arp <table>:
      set cells-<bridge> { type ipv4_addr; }
      map arp_bridges { type ifname : verdict; "<bridge>" : jump arp-<bridge> }
      chain input { type filter hook input priority filter; iifname vmap @arp_bridges }
      chain arp-<bridge> { arp saddr ip != @cells-<bridge> counter drop }

``to-<bridge>`` looks at unicast for the host only (``pkttype host``: what the host routes,
and cell to cell on the bridge, whose addresses are leased): a broadcast or multicast
between the bridge's cells passes as before. The sets are the leases of the space's
network (``leases``: host-local's files, so cells CNI attached there are in too), written
whole at each apply of the space and after each attach or detach of a cell on it.

A space whose cells the CNI plugins attach (``cniConfigPath`` set) keeps its subnet as the
bound: its conflist may serve other runtimes, whose attachments kukeond never sees. Its
ARP chain refuses senders outside the subnet, its ``spoofed`` is the subnet's, and nothing
is checked towards it: at most its subnet's addresses. Pure rendering only.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Final

from kukeon.runtime.network.nfttable import map_keys

log = logging.getLogger(__name__)

ARP_FAMILY: Final = "arp"
INET_FAMILY: Final = "inet"
ARP_MAP: Final = "arp_bridges"
TO_MAP: Final = "cell_bridges"
UNLEASED_COMMENT: Final = "unleased"
LEASED_SET_PREFIX: Final = "cells-"


def leased_set(bridge: str) -> str:
    return LEASED_SET_PREFIX + bridge


def arp_chain(bridge: str) -> str:
    return f"arp-{bridge}"


def to_chain(bridge: str) -> str:
    return f"to-{bridge}"


def _ref(family: str, **extra: Any) -> dict[str, Any]:
    return {"family": family, **extra}


def allowed_sources(bridge: str, subnet: IPv4Network, leased: bool) -> Any:
    """What a source (an ARP sender, an IPv4 source) from the bridge must be in."""
    if leased:
        return f"@{leased_set(bridge)}"
    return {"prefix": {"addr": str(subnet.network_address), "len": subnet.prefixlen}}


def render_leased_sets(
    table: str, bridge: str, addresses: Collection[IPv4Address]
) -> list[dict[str, Any]]:
    """Both tables' set of the bridge's leased addresses made if missing and replaced by
    ``addresses`` (pure)."""
    commands: list[dict[str, Any]] = []
    for family in (INET_FAMILY, ARP_FAMILY):
        name = _ref(family, table=table, name=leased_set(bridge))
        commands += [
            {"add": {"table": _ref(family, name=table)}},
            {"add": {"set": {**name, "type": "ipv4_addr"}}},
            {"flush": {"set": name}},
        ]
        if addresses:
            elements = sorted(str(address) for address in addresses)
            commands.append({"add": {"element": {**name, "elem": elements}}})
    return commands


def render_to_dispatch(table: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The inet map of bridges checked towards, and the forward chain's rule that looks it
    up (added before the egress dispatch: its chains end in no verdict)."""
    made = {
        "add": {"map": _ref(INET_FAMILY, table=table, name=TO_MAP, type="ifname", map="verdict")}
    }
    rule = [{"vmap": {"key": {"meta": {"key": "oifname"}}, "data": f"@{TO_MAP}"}}]
    return made, rule


def render_neighbour_bound(
    table: str, bridge: str, subnet: IPv4Network, leased: Collection[IPv4Address] | None
) -> list[dict[str, Any]]:
    """The space's ARP chain (and its ``to-`` chain and sets with ``leased``: the addresses
    leased on it; None for a CNI-attached space, bound by its subnet) (pure)."""
    arp = _ref(ARP_FAMILY, table=table)
    sender = {"payload": {"protocol": "arp", "field": "saddr ip"}}
    refuse = _unleased_rule(sender, allowed_sources(bridge, subnet, leased is not None))
    base = {**arp, "name": "input", "type": "filter", "hook": "input", "prio": 0}
    dispatch = [{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": f"@{ARP_MAP}"}}]
    commands: list[dict[str, Any]] = [{"add": {"table": _ref(ARP_FAMILY, name=table)}}]
    if leased is not None:
        commands += render_leased_sets(table, bridge, leased)
    commands += [
        {"add": {"map": {**arp, "name": ARP_MAP, "type": "ifname", "map": "verdict"}}},
        {"add": {"chain": {**base, "policy": "accept"}}},
        {"flush": {"chain": {**arp, "name": "input"}}},
        {"add": {"rule": {**arp, "chain": "input", "expr": dispatch}}},
        *_replaced_chain(ARP_FAMILY, table, arp_chain(bridge), [refuse]),
        _map_entry(ARP_FAMILY, table, ARP_MAP, bridge, arp_chain(bridge)),
    ]
    if leased is None:
        return commands
    unicast = {"match": {"op": "==", "left": {"meta": {"key": "pkttype"}}, "right": "host"}}
    destination = {"payload": {"protocol": "ip", "field": "daddr"}}
    towards = [unicast, *_unleased_rule(destination, f"@{leased_set(bridge)}")]
    return [
        *commands,
        *_replaced_chain(INET_FAMILY, table, to_chain(bridge), [towards]),
        _map_entry(INET_FAMILY, table, TO_MAP, bridge, to_chain(bridge)),
    ]


def render_leased_cleanup(table: str, bridge: str) -> list[dict[str, Any]]:
    """What a space bound by its leases had and one bound by its subnet has not (its
    ``cniConfigPath`` set since), removed whether there or not: each made first (``add``
    of an object there is nothing), then deleted; after its egress chain is rewritten,
    which referred to the set (pure)."""
    chain = _ref(INET_FAMILY, table=table, name=to_chain(bridge))
    entry = _map_entry(INET_FAMILY, table, TO_MAP, bridge, to_chain(bridge))
    element = _ref(INET_FAMILY, table=table, name=TO_MAP, elem=[bridge])
    commands = [
        {"add": {"chain": chain}},
        entry,
        {"delete": {"element": element}},
        {"flush": {"chain": chain}},
        {"delete": {"chain": chain}},
    ]
    for family in (INET_FAMILY, ARP_FAMILY):
        name = _ref(family, table=table, name=leased_set(bridge))
        commands += [{"add": {"set": {**name, "type": "ipv4_addr"}}}, {"delete": {"set": name}}]
    return commands


def _unleased_rule(left: dict[str, Any], allowed: Any) -> list[dict[str, Any]]:
    return [
        {"match": {"op": "!=", "left": left, "right": allowed}},
        {"counter": {"packets": 0, "bytes": 0}},
        {"drop": None},
    ]


def _replaced_chain(
    family: str, table: str, chain: str, rules: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    name = _ref(family, table=table, name=chain)
    return [
        {"add": {"chain": name}},
        {"flush": {"chain": name}},
        *(
            {
                "add": {
                    "rule": _ref(family, table=table, chain=chain, comment=UNLEASED_COMMENT, expr=e)
                }
            }
            for e in rules
        ),
    ]


def _map_entry(family: str, table: str, name: str, bridge: str, chain: str) -> dict[str, Any]:
    element = [[bridge, {"jump": {"target": chain}}]]
    return {"add": {"element": _ref(family, table=table, name=name, elem=element)}}


@dataclass(frozen=True)
class BoundState:
    """The neighbour bound's objects a listing of one of the two tables shows."""

    exists: bool
    bridges: frozenset[str] = frozenset()
    """Keys of the table's dispatch map (``arp_bridges`` or ``cell_bridges``)."""
    chains: frozenset[str] = frozenset()
    sets: frozenset[str] = frozenset()
    """The ``cells-`` sets."""


def parse_bound_state(listing: Mapping[str, Any] | None, *, dispatch_map: str) -> BoundState:
    if listing is None:
        return BoundState(exists=False)
    chains: set[str] = set()
    sets: set[str] = set()
    for item in listing.get("nftables", ()):
        if "chain" in item:
            chains.add(str(item["chain"]["name"]))
        elif "set" in item and str(item["set"].get("name")).startswith(LEASED_SET_PREFIX):
            sets.add(str(item["set"]["name"]))
    return BoundState(True, map_keys(listing, dispatch_map), frozenset(chains), frozenset(sets))


def render_unbound(
    *, family: str, table: str, bridge: str, state: BoundState, whole_table: bool
) -> list[dict[str, Any]]:
    """The commands that remove the bridge's bound from one of the tables, given what it
    holds (its chain before its set, which the chain refers to): the ``arp`` table whole
    with ``whole_table`` or its last bridge (pure)."""
    if not state.exists:
        return []
    if family == ARP_FAMILY and (whole_table or not state.bridges - {bridge}):
        return [{"delete": {"table": _ref(family, name=table)}}]
    dispatch_map, chain = (ARP_MAP, arp_chain(bridge))
    if family == INET_FAMILY:
        dispatch_map, chain = (TO_MAP, to_chain(bridge))
    commands: list[dict[str, Any]] = []
    if bridge in state.bridges:
        commands.append(
            {"delete": {"element": _ref(family, table=table, name=dispatch_map, elem=[bridge])}}
        )
    if chain in state.chains:
        name = _ref(family, table=table, name=chain)
        commands += [{"flush": {"chain": name}}, {"delete": {"chain": name}}]
    if leased_set(bridge) in state.sets:
        commands.append({"delete": {"set": _ref(family, table=table, name=leased_set(bridge))}})
    return commands
