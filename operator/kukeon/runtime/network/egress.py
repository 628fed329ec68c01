"""Per-space egress policy enforced with nftables, written as ``nft -j`` JSON.

Layout of the one table kukeon owns (``inet kukeon`` by default)::

    map egress_bridges { type ifname : verdict; "<bridge>" : jump egress-<bridge>, ... }
    set bridges { type ifname; "<bridge>", ... }            # every space's bridge
    set realm-<hash> { type ifname; "<bridge>", ... }       # the bridges of one realm
    set cell_connections { type ipv4_addr; flags dynamic; }  # per-source conntrack counts
    chain forward { type filter hook forward priority filter;
                    oifname vmap @cell_bridges; iifname vmap @egress_bridges }
    chain input   { type filter hook input   priority filter; iifname vmap @egress_bridges }
    chain egress-<bridge> {
        ip saddr != @cells-<bridge> counter drop   # not a cell's address: spoofed
        ct state new add @cell_connections { ip saddr ct count over <limit> } counter drop
        oifname "<bridge>" return              # cell to cell on the same bridge
        oifname @bridges oifname != @realm-<hash> ct state invalid,untracked counter drop
        oifname @bridges oifname != @realm-<hash> ct status ! dnat counter drop   # other realms
        ct state established,related accept
        ip daddr <cidr|resolved host> [tcp dport {..}] counter accept   # one per allow rule
        counter accept|drop                     # the space's default
    }

Why this shape:

* Only traffic *entering from the space's bridge* reaches the space chain, through one
  verdict-map lookup, so spaces never see each other's rules. ``br_netfilter`` makes
  traffic between two cells of one bridge cross the forward hook too; the first rule returns
  it untouched so an egress policy never cuts a space off from itself.
* A realm is a network boundary: a new connection from a cell to a cell of another realm
  on the node (which the node would route from one bridge to the other) is dropped by the
  sending space's chain, whatever its policy, so no realm's editor can open its cells to
  another's or have to close them. Only a connection a host port DNAT'd there passes (its
  packets and replies); every other packet towards another realm's bridge is dropped
  before the ``established,related`` accept, a packet of no connection included (``ct
  status`` matches nothing on it, so it is dropped by its state, invalid or untracked):
  an ICMP error, from the cell's own address, quoting a flow of two cells of another
  realm (conntrack finds it *related*, or *invalid* where the flow is masqueraded) was
  let through and cut that flow (a port unreachable) or could lower its path MTU. Spaces
  of one realm reach each other as before. A connection to a published host port, DNAT'd
  to another realm's cell, is let through: publishing a port (``privileged``) opens it to
  every client.
* A packet from the bridge whose IPv4 source is not in the space's subnet is dropped first
  (``spoofed``), on both hooks and before the same-bridge return. Every container has
  ``CAP_NET_RAW`` (the runtime's default set), so it can write any source, and conntrack
  takes such a packet for a flow the named address opened: a datagram "from" another
  realm's cell to a cell of a second space of the sender's realm made that second cell's
  datagrams to it the flow's replies, ``established``, past ``other-realm`` both ways.
  Dropped in the filter hooks, the packet's conntrack entry is never confirmed.
* A cell may hold at most ``cellConnectionsLimit`` connections in the host's conntrack
  table (``cell-connections``; kukeond's setting, 0: no rule): past it, its new ones are
  dropped before conntrack confirms them. The table (``nf_conntrack_max``) is the whole
  host's: once full, the kernel drops every new connection of every realm and of the host
  itself, and one cell sending UDP to many ports filled it (each datagram to a new port
  is an entry that lives 30 s). The count is per source address, so per cell; it counts
  what is still in conntrack (a closed TCP connection's TIME_WAIT entry not).
* The source must be an address leased to a cell of the space (``cells-<bridge>``; the
  subnet for a space the CNI plugins attach), and the host takes ARP from the bridge (an
  ``arp`` table of the same name) and routes to it only for such an address: else a cell
  filled the host's neighbour table (``neighbours``, which renders those objects).
* The input hook is covered as well: a cell talking to the host's own addresses (the
  gateway, or any local service) is egress from the cell's point of view.
* A drop in this table wins over ACCEPTs in iptables-nft's tables, because every base chain
  on a hook must accept a packet for it to pass.
* A space's chain is replaced in one nft transaction (flush and re-add in the same batch),
  so there is never a moment with a half-written policy; removing the last space deletes
  the whole table, leaving nothing behind.

Host names in rules are resolved to IPv4 addresses when the policy is applied; the
controller re-applies periodically to follow DNS changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, Literal

from kukeon.runtime.network.connlimit import cell_connections_rule, connections_set_script
from kukeon.runtime.network.errors import (
    EgressResolutionError,
    NftError,
)
from kukeon.runtime.network.leases import leased
from kukeon.runtime.network.masquerade import (
    masquerading_bridges,
    render_masquerade,
    render_unmasquerade,
)
from kukeon.runtime.network.neighbours import (
    ARP_FAMILY,
    ARP_MAP,
    TO_MAP,
    BoundState,
    allowed_sources,
    parse_bound_state,
    render_leased_cleanup,
    render_leased_sets,
    render_neighbour_bound,
    render_to_dispatch,
    render_unbound,
)
from kukeon.runtime.network.nfttable import FAMILY, NftTable, map_keys

log = logging.getLogger(__name__)

DEFAULT_TABLE = "kukeon"
BRIDGE_MAP = "egress_bridges"
BASE_CHAINS = ("forward", "input")
ESTABLISHED_COMMENT = "established"
DEFAULT_COMMENT = "default"
OTHER_REALM_COMMENT = "other-realm"
OTHER_REALM_INVALID_COMMENT = "other-realm-invalid"
SPOOFED_COMMENT = "spoofed"
DEFAULT_CELL_CONNECTIONS = 16384
"""Connections a cell may hold in the host's conntrack table unless kukeond's
``cellConnectionsLimit`` says: 16 cells at it fill a 262,144-entry table."""
CELL_CONNECTIONS_MAX = 2**31 - 1
"""nft's ``ct count`` holds a 32-bit count."""
NO_CONNECTION = ("invalid", "untracked")
"""The conntrack states of a packet conntrack tied to no connection (an ICMP error quoting
none it accepts, a TCP segment out of every window...)."""
BRIDGE_SET = "bridges"
REALM_SET_PREFIX = "realm-"


@dataclass(frozen=True)
class EgressRule:
    """Allow traffic to ``cidr`` or to the IPv4 addresses of ``host``.

    With ``ports``, only TCP to those destination ports is allowed.
    """

    cidr: IPv4Network | IPv6Network | None = None
    host: str | None = None
    ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if (self.cidr is None) == (self.host is None):
            raise ValueError("an egress rule needs exactly one of `cidr` or `host`")
        if self.host is not None and not self.host.strip():
            raise ValueError("an egress rule's `host` is empty")
        for port in self.ports:
            if not 1 <= port <= 65535:
                raise ValueError(f"egress rule port {port} is outside 1-65535")


@dataclass(frozen=True)
class EgressRuleset:
    """What a space's cells may reach: the allow rules, then the default verdict."""

    default: Literal["allow", "deny"] = "allow"
    rules: tuple[EgressRule, ...] = ()


@dataclass(frozen=True)
class ResolvedRule:
    """An allow rule with its destinations fixed to addresses (the form written to nft)."""

    destinations: tuple[IPv4Network | IPv6Network, ...]
    """All of one family, so one ``ip``/``ip6 daddr`` match covers them."""
    ports: tuple[int, ...] = ()
    source: EgressRule | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RuleCounter:
    """Packets and bytes matched by one rule of a space chain (``rule-<n>`` or ``default``)."""

    name: str
    packets: int
    bytes: int


@dataclass(frozen=True)
class AppliedEgress:
    """What :meth:`NftEgress.apply` installed."""

    table: str
    chain: str
    bridge: str
    default: Literal["allow", "deny"]
    rules: tuple[ResolvedRule, ...]


Resolver = Callable[[str], Awaitable[Sequence[IPv4Address]]]


def chain_name(bridge: str) -> str:
    return f"egress-{bridge}"


def realm_set_name(realm: str) -> str:
    """The set of ``realm``'s bridges: hashed, since a set name may be short on older kernels."""
    return REALM_SET_PREFIX + hashlib.sha256(realm.encode()).hexdigest()[:12]


def rule_comment(index: int) -> str:
    return f"rule-{index}"


async def resolve_ipv4(host: str) -> Sequence[IPv4Address]:
    """The IPv4 addresses of ``host`` from the system resolver."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise EgressResolutionError(host=host, reason=str(error)) from error
    return sorted({IPv4Address(info[4][0]) for info in infos})


async def resolve_policy(
    policy: EgressRuleset, *, resolver: Resolver = resolve_ipv4
) -> tuple[ResolvedRule, ...]:
    resolved = []
    for rule in policy.rules:
        destinations: tuple[IPv4Network | IPv6Network, ...]
        if rule.cidr is not None:
            destinations = (rule.cidr,)
        else:
            assert rule.host is not None
            addresses = await resolver(rule.host)
            if not addresses:
                raise EgressResolutionError(host=rule.host, reason="no A record")
            destinations = tuple(IPv4Network(f"{address}/32") for address in addresses)
        resolved.append(
            ResolvedRule(
                destinations=destinations, ports=tuple(sorted(set(rule.ports))), source=rule
            )
        )
    return tuple(resolved)


def _ref(**extra: Any) -> dict[str, Any]:
    return {"family": FAMILY, **extra}


def _address_value(net: IPv4Network | IPv6Network) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _rule_exprs(rule: ResolvedRule) -> list[dict[str, Any]]:
    values = [_address_value(net) for net in rule.destinations]
    family = "ip6" if isinstance(rule.destinations[0], IPv6Network) else "ip"
    exprs: list[dict[str, Any]] = [
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": family, "field": "daddr"}},
                "right": values[0] if len(values) == 1 else {"set": values},
            }
        }
    ]
    if rule.ports:
        ports: Any = rule.ports[0] if len(rule.ports) == 1 else {"set": list(rule.ports)}
        exprs.append(
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                    "right": ports,
                }
            }
        )
    exprs.append({"counter": {"packets": 0, "bytes": 0}})
    exprs.append({"accept": None})
    return exprs


def _dispatch_commands(table: str) -> list[dict[str, Any]]:
    """The table, the bridge map and the base chains that send each bridge to its chain."""
    to_map, to_dispatch = render_to_dispatch(table)
    commands: list[dict[str, Any]] = [
        {"add": {"table": _ref(name=table)}},
        {"add": {"map": _ref(table=table, name=BRIDGE_MAP, type="ifname", map="verdict")}},
        to_map,
    ]
    dispatch = [{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": f"@{BRIDGE_MAP}"}}]
    for hook in BASE_CHAINS:
        base = _ref(table=table, name=hook, type="filter", hook=hook, prio=0, policy="accept")
        # Flushing and re-adding keeps exactly these dispatch rules, whatever was there.
        commands += [{"add": {"chain": base}}, {"flush": {"chain": _ref(table=table, name=hook)}}]
        if hook == "forward":
            commands.append({"add": {"rule": _ref(table=table, chain=hook, expr=to_dispatch)}})
        commands.append({"add": {"rule": _ref(table=table, chain=hook, expr=dispatch)}})
    return commands


def _space_chain_head(
    table: str,
    bridge: str,
    realm: str,
    subnet: IPv4Network,
    cell_connections: int,
    leased: bool,
) -> list[dict[str, Any]]:
    """The space chain emptied, then what is decided before any rule of the space's policy.

    An IPv4 packet whose source is not an address of the space's cells (``leased``: its
    ``cells-`` set; else its ``subnet``) is dropped (a cell wrote it), a new connection of a
    cell holding ``cell_connections`` already too (unless 0), traffic back into the same
    bridge returns untouched (cell to cell), what goes to another realm's bridge is dropped
    unless it belongs to a connection a host port DNAT'd there (``other-realm``;
    ``other-realm-invalid`` for a packet of no connection, on which ``ct status`` matches
    nothing), then established or related packets are accepted.
    """
    chain = chain_name(bridge)
    saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
    oifname = {"meta": {"key": "oifname"}}
    to_other_realm = [
        _match("==", oifname, f"@{BRIDGE_SET}"),
        _match("!=", oifname, f"@{realm_set_name(realm)}"),
    ]
    not_dnat = {"match": {"op": "!", "left": {"ct": {"key": "status"}}, "right": "dnat"}}
    # (comment, matches, verdict): each but the same-bridge return counted.
    rules: list[tuple[str | None, list[dict[str, Any]], str]] = [
        (SPOOFED_COMMENT, [_match("!=", saddr, allowed_sources(bridge, subnet, leased))], "drop"),
        *cell_connections_rule(saddr, cell_connections),
        (None, [_match("==", oifname, bridge)], "return"),
        (OTHER_REALM_INVALID_COMMENT, [*to_other_realm, _ct_state(NO_CONNECTION)], "drop"),
        (OTHER_REALM_COMMENT, [*to_other_realm, not_dnat], "drop"),
        (ESTABLISHED_COMMENT, [_ct_state(("established", "related"))], "accept"),
    ]
    commands: list[dict[str, Any]] = [
        *_realm_membership(table, bridge, realm),
        {"add": {"chain": _ref(table=table, name=chain)}},
        {"flush": {"chain": _ref(table=table, name=chain)}},
    ]
    for comment, matches, verdict in rules:
        if comment is None:
            rule = _ref(table=table, chain=chain, expr=[*matches, {verdict: None}])
        else:
            counted = [*matches, {"counter": {"packets": 0, "bytes": 0}}, {verdict: None}]
            rule = _ref(table=table, chain=chain, comment=comment, expr=counted)
        commands.append({"add": {"rule": rule}})
    return commands


def _match(op: str, left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _ct_state(states: Sequence[str]) -> dict[str, Any]:
    return _match("in", {"ct": {"key": "state"}}, list(states))


def _realm_membership(table: str, bridge: str, realm: str) -> list[dict[str, Any]]:
    """``bridge`` in the set of every space's bridges and in its realm's (both made if
    missing; adding an element already there changes nothing)."""
    commands: list[dict[str, Any]] = []
    for name in (BRIDGE_SET, realm_set_name(realm)):
        commands += [
            {"add": {"set": _ref(table=table, name=name, type="ifname")}},
            {"add": {"element": _ref(table=table, name=name, elem=[bridge])}},
        ]
    return commands


def _policy_rules(
    table: str, chain: str, default: Literal["allow", "deny"], rules: Sequence[ResolvedRule]
) -> list[dict[str, Any]]:
    """One counted accept per allow rule, in order, then the counted default verdict."""
    commands: list[dict[str, Any]] = [
        {
            "add": {
                "rule": _ref(
                    table=table, chain=chain, comment=rule_comment(index), expr=_rule_exprs(rule)
                )
            }
        }
        for index, rule in enumerate(rules)
    ]
    verdict = "accept" if default == "allow" else "drop"
    default_expr = [{"counter": {"packets": 0, "bytes": 0}}, {verdict: None}]
    commands.append(
        {
            "add": {
                "rule": _ref(table=table, chain=chain, comment=DEFAULT_COMMENT, expr=default_expr)
            }
        }
    )
    return commands


def render_apply(
    *,
    table: str,
    bridge: str,
    realm: str,
    subnet: IPv4Network,
    default: Literal["allow", "deny"],
    rules: Sequence[ResolvedRule],
    masquerade: bool = False,
    cell_connections: int = DEFAULT_CELL_CONNECTIONS,
    leased: Collection[IPv4Address] | None = None,
) -> dict[str, Any]:
    """The one nft transaction that installs (or replaces) ``bridge``'s space chain (pure),
    the bridge of a space of ``realm`` whose cells have their addresses in ``subnet``.

    The bridge joins the dispatch map last, once its chain holds the whole policy. With
    ``masquerade``, the space's masquerade chain too (``masquerade``). A cell holding
    ``cell_connections`` in conntrack opens no more (0: no limit). ``leased``: the
    addresses leased to the space's cells, the only ones it takes from the bridge and
    routes to (``neighbours``); None: its subnet, for a space the CNI plugins attach.
    """
    chain = chain_name(bridge)
    joins_map = {
        "add": {
            "element": _ref(
                table=table, name=BRIDGE_MAP, elem=[[bridge, {"jump": {"target": chain}}]]
            )
        }
    }
    commands = [
        *_dispatch_commands(table),
        *render_neighbour_bound(table, bridge, subnet, leased),
        *_space_chain_head(table, bridge, realm, subnet, cell_connections, leased is not None),
        *_policy_rules(table, chain, default, rules),
        joins_map,
        *(render_leased_cleanup(table, bridge) if leased is None else []),
    ]
    if masquerade:
        commands += render_masquerade(table=table, bridge=bridge, subnet=subnet)
    return {"nftables": commands}


@dataclass(frozen=True)
class TableState:
    """What a listing of the table says (``exists`` False when there is no table)."""

    exists: bool
    bridges: frozenset[str] = frozenset()
    """Keys of the bridge map."""
    chains: frozenset[str] = frozenset()
    masquerading: frozenset[str] = frozenset()
    """Keys of the masquerade map."""
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """The bridge sets (every bridge's, each realm's) and their elements."""


def parse_table_state(listing: Mapping[str, Any] | None) -> TableState:
    if listing is None:
        return TableState(exists=False)
    chains: set[str] = set()
    sets: dict[str, frozenset[str]] = {}
    for item in listing.get("nftables", ()):
        if "chain" in item:
            chains.add(str(item["chain"]["name"]))
        elif "set" in item:
            name = str(item["set"].get("name"))
            if name == BRIDGE_SET or name.startswith(REALM_SET_PREFIX):
                elements = item["set"].get("elem", ())
                sets[name] = frozenset(e for e in elements if isinstance(e, str))
    return TableState(
        exists=True,
        bridges=map_keys(listing, BRIDGE_MAP),
        chains=frozenset(chains),
        masquerading=masquerading_bridges(listing),
        sets=sets,
    )


def is_last_space(state: TableState, bridge: str) -> bool:
    """Whether ``state`` holds no space but ``bridge``'s (by its map, else by its chains)."""
    chain = chain_name(bridge)
    return not (state.bridges - {bridge}) and not {
        c for c in state.chains if c.startswith("egress-") and c != chain
    }


def render_remove(
    *, table: str, bridge: str, state: TableState, bound: BoundState | None = None
) -> dict[str, Any] | None:
    """The transaction that removes ``bridge``'s chain, or the whole table if it was the last
    (``bound``: what the table holds of the neighbour bound, removed too).

    ``None`` when there is nothing to remove (pure).
    """
    if not state.exists:
        return None
    chain = chain_name(bridge)
    if is_last_space(state, bridge):
        return {"nftables": [{"delete": {"table": _ref(name=table)}}]}
    commands: list[dict[str, Any]] = []
    if bridge in state.bridges:
        commands.append({"delete": {"element": _ref(table=table, name=BRIDGE_MAP, elem=[bridge])}})
    if chain in state.chains:
        commands += [
            {"flush": {"chain": _ref(table=table, name=chain)}},
            {"delete": {"chain": _ref(table=table, name=chain)}},
        ]
    commands += render_unmasquerade(
        table=table, bridge=bridge, bridges=state.masquerading, chains=state.chains
    )
    commands += [
        {"delete": {"element": _ref(table=table, name=name, elem=[bridge])}}
        for name, elements in sorted(state.sets.items())
        if bridge in elements
    ]
    if bound is not None:  # after the egress chain, which refers to its set
        commands += render_unbound(
            family=FAMILY, table=table, bridge=bridge, state=bound, whole_table=False
        )
    return {"nftables": commands} if commands else None


def render_drop_empty_realm_sets(*, table: str, state: TableState) -> dict[str, Any] | None:
    """The realm sets ``state`` shows empty (their realm has no space left here), deleted;
    ``None`` when there are none (pure)."""
    empty = [
        name
        for name, elements in sorted(state.sets.items())
        if name.startswith(REALM_SET_PREFIX) and not elements
    ]
    if not state.exists or not empty:
        return None
    return {"nftables": [{"delete": {"set": _ref(table=table, name=name)}} for name in empty]}


def parse_counters(listing: Mapping[str, Any], *, chain: str) -> tuple[RuleCounter, ...]:
    """Per-rule counters of ``chain`` from an ``nft -j list`` answer, in rule order."""
    counters = []
    for item in listing.get("nftables", ()):
        rule = item.get("rule")
        if not rule or rule.get("chain") != chain or "comment" not in rule:
            continue
        for expr in rule.get("expr", ()):
            if "counter" in expr:
                counter = expr["counter"]
                counters.append(
                    RuleCounter(
                        name=str(rule["comment"]),
                        packets=int(counter.get("packets", 0)),
                        bytes=int(counter.get("bytes", 0)),
                    )
                )
    return tuple(counters)


class NftEgress:
    """Installs, replaces, reads and removes space egress chains in one nft table."""

    def __init__(
        self,
        *,
        table: str = DEFAULT_TABLE,
        nft_binary: str | None = None,
        resolver: Resolver = resolve_ipv4,
        cell_connections_limit: int = DEFAULT_CELL_CONNECTIONS,
    ) -> None:
        self.table = table
        self.cell_connections_limit = cell_connections_limit
        self._connections_set_made = False
        self._nft = NftTable(table, nft_binary=nft_binary)
        self._arp = NftTable(table, nft_binary=nft_binary, family=ARP_FAMILY)
        self._resolver = resolver
        # Listing and then changing the table must not interleave between spaces.
        self._lock = asyncio.Lock()

    @property
    def nft_binary(self) -> str:
        """The `nft` command (HostPrerequisiteError, naming the package, when missing)."""
        return self._nft.nft_binary

    async def apply(
        self,
        *,
        bridge: str,
        realm: str,
        subnet: IPv4Network,
        policy: EgressRuleset,
        masquerade: bool = False,
        leases: Path | None = None,
    ) -> AppliedEgress:
        """Install or replace the chain of ``bridge``, a space of ``realm`` on ``subnet``
        (with ``masquerade``, its masquerade too); ``leases``: its network's lease
        directory, whose addresses are the only ones taken from the bridge and routed to it
        (None: its subnet's)."""
        rules = await resolve_policy(policy, resolver=self._resolver)
        async with self._lock:
            batch = render_apply(
                table=self.table,
                bridge=bridge,
                realm=realm,
                subnet=subnet,
                default=policy.default,
                rules=rules,
                masquerade=masquerade,
                cell_connections=self.cell_connections_limit,
                leased=None if leases is None else await asyncio.to_thread(leased, leases),
            )
            await self._apply_with_connections_set(batch, action=f"apply egress of {bridge}")
        return AppliedEgress(
            table=self.table,
            chain=chain_name(bridge),
            bridge=bridge,
            default=policy.default,
            rules=rules,
        )

    async def _apply_with_connections_set(self, batch: Mapping[str, Any], *, action: str) -> None:
        """``batch``, the set its ``cell-connections`` rules add to made first if it may be
        missing: at the first apply, after a removal (the last deletes the table), and once
        more when the batch fails (the table deleted since, a ``flush ruleset``)."""
        made_now = await self._make_connections_set()
        try:
            await self._nft.apply(batch, action=action)
        except NftError:
            if made_now or not self.cell_connections_limit:
                raise
            self._connections_set_made = False
            await self._make_connections_set()
            await self._nft.apply(batch, action=action)

    async def _make_connections_set(self) -> bool:
        """Make the table's ``cell_connections`` set unless made already; whether it ran."""
        if self._connections_set_made or not self.cell_connections_limit:
            return False
        script = connections_set_script(self.table)
        await self._nft.apply_text(script, action="make the cell connections set")
        self._connections_set_made = True
        return True

    async def follow_leases(self, *, bridge: str, leases: Path) -> None:
        """The bridge's sets of leased addresses (``neighbours``) written from ``leases``,
        its lease directory: after a cell's lease was taken or released. Read under the
        lock, so the last writer writes what the directory holds last."""
        async with self._lock:
            addresses = await asyncio.to_thread(leased, leases)
            batch = {"nftables": render_leased_sets(self.table, bridge, addresses)}
            await self._nft.apply(batch, action=f"follow the leases of {bridge}")

    async def remove(self, *, bridge: str) -> bool:
        """Remove the space chain (and the table with the last one), and its neighbour
        bound (the ``arp`` table with the last one); whether anything went."""
        async with self._lock:
            listing = await self._list_table()
            state = parse_table_state(listing)
            bound = parse_bound_state(listing, dispatch_map=TO_MAP)
            inet = render_remove(table=self.table, bridge=bridge, state=state, bound=bound)
            arp = render_unbound(
                family=ARP_FAMILY,
                table=self.table,
                bridge=bridge,
                state=parse_bound_state(await self._arp.listing(), dispatch_map=ARP_MAP),
                whole_table=not state.exists or is_last_space(state, bridge),
            )
            batch = {"nftables": [*(inet or {}).get("nftables", ()), *arp]}
            if not batch["nftables"]:
                return False
            await self._nft.apply(batch, action=f"remove egress of {bridge}")
            self._connections_set_made = False  # gone if the table went
            await self._drop_empty_realm_sets()
            return True

    async def _drop_empty_realm_sets(self) -> None:
        """Best effort: a set some chain still refers to (only by a hand-made chain) stays,
        and an empty set filters nothing; the next removal tries again."""
        batch = render_drop_empty_realm_sets(
            table=self.table, state=parse_table_state(await self._list_table())
        )
        if batch is None:
            return
        try:
            await self._nft.apply(batch, action="drop the sets of realms gone")
        except NftError as error:
            log.warning("an empty realm set of table %s stays: %s", self.table, error)

    async def counters(self, *, bridge: str) -> tuple[RuleCounter, ...]:
        listing = await self._list_table()
        if listing is None:
            return ()
        return parse_counters(listing, chain=chain_name(bridge))

    async def state(self) -> TableState:
        return parse_table_state(await self._list_table())

    async def _list_table(self) -> Mapping[str, Any] | None:
        return await self._nft.listing()
