"""Host ports published to cells, as nftables DNAT in the table kukeon owns (``inet kukeon``).

Layout, next to the egress chains of ``egress`` in the same table::

    set ports_bridges { type ifname }                  # bridges of cells with publications
    chain ports-prerouting { type nat hook prerouting priority dstnat;
        fib daddr type local jump ports-dnat }         # from other hosts (and other cells)
    chain ports-output { type nat hook output priority dstnat;
        fib daddr type local jump ports-dnat }         # from the host itself, 127.0.0.1 included
    chain ports-postrouting { type nat hook postrouting priority srcnat;
        ct status dnat oifname @ports_bridges ip saddr 127.0.0.0/8 masquerade
        ct status dnat iifname @ports_bridges oifname @ports_bridges masquerade }
    chain ports-guard { type filter hook prerouting priority raw;
        iifname @ports_bridges ip saddr 127.0.0.0/8 drop
        iifname @ports_bridges ip daddr 127.0.0.0/8 drop }
    chain ports-dnat { jump ports-<cell> comment "<owner>" ... }    # one jump per cell
    chain ports-<cell> {                                            # the cell's publications
        [meta nfproto ipv4 | ip daddr <hostIP>] tcp|udp dport <hostPort>
            counter dnat ip to <cell IP>:<containerPort> comment "<proto> <hostIP|*>:<hostPort>" }

Why this shape:

* Only destinations that are the host's own addresses are translated (``fib daddr type
  local``): a publication never captures traffic the host forwards elsewhere, and one on an
  address the host does not have does nothing until the address appears.
* A cell's publications are one chain, replaced in one nft transaction (flush and re-add),
  so a changed ``ports`` list never leaves a moment with half of it; the cell's jump and
  chain go together at release, and the shared chains and set go with the last cell.
* Loopback: a connection to ``127.0.0.1:<hostPort>`` is translated in the output hook and
  leaves through the cell's bridge with a loopback source, which the kernel routes only
  with ``route_localnet=1`` on that bridge (as Docker does on ``docker0``); the postrouting
  masquerade rewrites the source to the bridge's address, so the cell can answer. Since
  ``route_localnet`` would also let a cell send packets from, or to, ``127.0.0.0/8`` into the
  host (CVE-2020-8558 against kube-proxy), ``ports-guard`` drops both on the bridges kukeon
  publishes through, before conntrack sees them. The guard goes with the last publication,
  so ``route_localnet`` is set back to 0 on those bridges first: a bridge left at 1
  without it let its cells reach whatever listens on the host's 127.0.0.1 only.
* A connection from a cell to a published port of the host's address is translated too
  (``ports-prerouting``); when it comes back out of a kukeon bridge it is masqueraded, so a
  cell of the same bridge gets its answers through the host (hairpin). Inbound traffic is
  not filtered here: the egress chains act on what *enters from* a space's bridge only, so
  replies pass as ``established``, and a cell reaching another space's published port is
  that first space's egress, decided by its policy as for any destination.
* Each DNAT rule's comment is the publication's key, so the node can tell which cell holds
  a host port before it publishes another (the check behind the API server's admission,
  which two concurrent writes can both pass). Nor does it take a port a process of the
  node listens on (``/proc/net``): the output and prerouting DNAT would take its
  connections, an sshd's or a loopback etcd's.

Only IPv4 is published: cells have IPv4 addresses only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Any, Literal

from kukeon.runtime.network.egress import BRIDGE_SET as SPACE_BRIDGE_SET
from kukeon.runtime.network.errors import NetworkError
from kukeon.runtime.network.netlink import IPRoute
from kukeon.runtime.network.nfttable import FAMILY, NftTable

logger = logging.getLogger(__name__)

BRIDGE_SET = "ports_bridges"
DNAT_CHAIN = "ports-dnat"
CELL_CHAIN_PREFIX = "ports-c-"
PREROUTING_CHAIN = "ports-prerouting"
OUTPUT_CHAIN = "ports-output"
POSTROUTING_CHAIN = "ports-postrouting"
GUARD_CHAIN = "ports-guard"
BASE_CHAINS = (PREROUTING_CHAIN, OUTPUT_CHAIN, POSTROUTING_CHAIN, GUARD_CHAIN)
"""The hooked chains, in the order they are removed (before what they reference)."""
_COMMENT_MAX = 128
"""nftables' limit on a rule comment."""
_CHAIN_NAME_MAX = 250
_LOOPBACK = IPv4Network("127.0.0.0/8")
_SYSCTL_DIR = Path("/proc/sys/net/ipv4/conf")
_PROC_NET = Path("/proc/net")
_BOUND_STATES = {"tcp": "0A", "udp": "07"}
"""A socket's state in /proc/net/{tcp,udp}[6] when it holds its port: TCP LISTEN, UDP bound
and unconnected."""

Protocol = Literal["tcp", "udp"]


class PortConflictError(NetworkError):
    """The host port is already published on this node by another cell, or a process of
    the node listens on it (a DNAT would take its connections)."""

    def __init__(self, publication: Publication, owner: str, *, held_by: str = "published") -> None:
        self.publication = publication
        self.owner = owner
        super().__init__(
            f"host port {publication.describe()} is already {held_by} on this node by "
            f"{owner}; the cell's ports are published once it is free"
        )


@dataclass(frozen=True, order=True)
class Publication:
    """One host port forwarded to a port of a cell (``host_ip`` None: every IPv4 address)."""

    protocol: Protocol
    host_port: int
    container_port: int
    host_ip: IPv4Address | None = None

    def __post_init__(self) -> None:
        for port in (self.host_port, self.container_port):
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1-65535")

    @property
    def key(self) -> str:
        """What the host port is: ``tcp *:8080`` or ``udp 127.0.0.1:53`` (its rule's comment)."""
        return f"{self.protocol} {self.host_ip or '*'}:{self.host_port}"

    def describe(self) -> str:
        return f"{self.host_port}/{self.protocol} on {self.host_ip or 'every address'}"

    def overlaps(self, other: HostPort) -> bool:
        """Whether both claim one host port: same protocol and port, same address or either
        of them every address."""
        return (
            self.protocol == other.protocol
            and self.host_port == other.host_port
            and (self.host_ip is None or other.host_ip is None or self.host_ip == other.host_ip)
        )

    @property
    def reaches_loopback(self) -> bool:
        return self.host_ip is None or self.host_ip in _LOOPBACK


@dataclass(frozen=True)
class HostPort:
    """A host port as a rule's comment names it (what another cell holds)."""

    protocol: str
    host_port: int
    host_ip: IPv4Address | None


def parse_key(text: str) -> HostPort | None:
    """The host port of a rule comment written by :attr:`Publication.key`; None if it is not one."""
    protocol, _, rest = text.partition(" ")
    address, _, port = rest.rpartition(":")
    if protocol not in ("tcp", "udp") or not port.isdigit() or not address:
        return None
    try:
        host_ip = None if address == "*" else IPv4Address(address)
    except ValueError:
        return None
    return HostPort(protocol, int(port), host_ip)


@dataclass(frozen=True)
class CellPorts:
    """What one cell publishes: its address on its bridge and its publications."""

    cell_id: str
    """The cell's network id (its CNI container id): names its chain."""
    owner: str
    """How a conflict names the cell (``realm/space/stack/cell``)."""
    address: IPv4Address
    bridge: str
    publications: tuple[Publication, ...]


def cell_chain(cell_id: str) -> str:
    """The chain of a cell's publications: its id, or a hash of a long one."""
    name = CELL_CHAIN_PREFIX + cell_id
    if len(name) <= _CHAIN_NAME_MAX:
        return name
    return CELL_CHAIN_PREFIX + hashlib.sha256(cell_id.encode()).hexdigest()[:32]


def _ref(**extra: Any) -> dict[str, Any]:
    return {"family": FAMILY, **extra}


def _equals(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _ip(field_name: str) -> dict[str, Any]:
    return {"payload": {"protocol": "ip", "field": field_name}}


def _loopback() -> dict[str, Any]:
    return {"prefix": {"addr": str(_LOOPBACK.network_address), "len": _LOOPBACK.prefixlen}}


_DNAT_STATUS = {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}
_IIF_KUKEON = _equals({"meta": {"key": "iifname"}}, f"@{BRIDGE_SET}")
_OIF_KUKEON = _equals({"meta": {"key": "oifname"}}, f"@{BRIDGE_SET}")
_TO_LOCAL = _equals({"fib": {"result": "type", "flags": ["daddr"]}}, "local")

_GUARD_RULES = (
    [_IIF_KUKEON, _equals(_ip("saddr"), _loopback()), {"drop": None}],
    [_IIF_KUKEON, _equals(_ip("daddr"), _loopback()), {"drop": None}],
)
_BASE_CHAINS: tuple[tuple[str, str, str, int, tuple[list[dict[str, Any]], ...]], ...] = (
    (PREROUTING_CHAIN, "nat", "prerouting", -100, ([_TO_LOCAL, {"jump": {"target": DNAT_CHAIN}}],)),
    (OUTPUT_CHAIN, "nat", "output", -100, ([_TO_LOCAL, {"jump": {"target": DNAT_CHAIN}}],)),
    (
        POSTROUTING_CHAIN,
        "nat",
        "postrouting",
        100,
        (
            [_DNAT_STATUS, _OIF_KUKEON, _equals(_ip("saddr"), _loopback()), {"masquerade": None}],
            [_DNAT_STATUS, _IIF_KUKEON, _OIF_KUKEON, {"masquerade": None}],
        ),
    ),
    (GUARD_CHAIN, "filter", "prerouting", -300, _GUARD_RULES),
)
"""name, type, hook, priority and rules of each hooked chain."""


def _shared_commands(table: str) -> list[dict[str, Any]]:
    """The set, ``ports-dnat`` and the hooked chains, each hooked chain rewritten whole."""
    commands: list[dict[str, Any]] = [
        {"add": {"table": _ref(name=table)}},
        {"add": {"set": _ref(table=table, name=BRIDGE_SET, type="ifname")}},
        {"add": {"chain": _ref(table=table, name=DNAT_CHAIN)}},
    ]
    for name, kind, hook, prio, rules in _BASE_CHAINS:
        base = _ref(table=table, name=name, type=kind, hook=hook, prio=prio, policy="accept")
        commands += [
            {"add": {"chain": base}},
            {"flush": {"chain": _ref(table=table, name=name)}},
            *({"add": {"rule": _ref(table=table, chain=name, expr=expr)}} for expr in rules),
        ]
    return commands


def dnat_rule(publication: Publication, address: IPv4Address) -> list[dict[str, Any]]:
    """The expressions that forward ``publication`` to ``address`` (pure)."""
    exprs: list[dict[str, Any]] = [
        _equals({"meta": {"key": "nfproto"}}, "ipv4")
        if publication.host_ip is None
        else _equals(_ip("daddr"), str(publication.host_ip)),
        _equals(
            {"payload": {"protocol": publication.protocol, "field": "dport"}}, publication.host_port
        ),
        {"counter": {"packets": 0, "bytes": 0}},
        {"dnat": {"family": "ip", "addr": str(address), "port": publication.container_port}},
    ]
    return exprs


@dataclass(frozen=True)
class PortsTable:
    """What a listing of the table says about publications."""

    exists: bool
    chains: frozenset[str] = frozenset()
    jumps: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Cell chain -> handles of the ``ports-dnat`` rules that jump to it."""
    owners: Mapping[str, str] = field(default_factory=dict)
    """Cell chain -> the owner written as its jump's comment."""
    held: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Cell chain -> the keys (comments) of its DNAT rules."""
    bridges: frozenset[str] = frozenset()
    """The bridges of ``ports_bridges``: those ``ports-guard`` protects."""
    space_bridges: frozenset[str] = frozenset()
    """Every space bridge of the table (the egress chains' set): the node's bridges."""
    guard_drops: int = 0
    """How many drop rules ``ports-guard`` holds (both of them: the guard is whole)."""

    @property
    def guarded(self) -> frozenset[str]:
        """The bridges ``ports-guard`` really protects: none when the chain lost a rule."""
        whole = GUARD_CHAIN in self.chains and self.guard_drops >= len(_GUARD_RULES)
        return self.bridges if whole else frozenset()

    def cell_chains(self) -> frozenset[str]:
        return frozenset(c for c in self.chains if c.startswith(CELL_CHAIN_PREFIX))

    def releases_the_guard(self, cell_id: str) -> bool:
        """Whether releasing ``cell_id`` removes ``ports-guard`` (it is the last cell)."""
        return not self.cell_chains() - {cell_chain(cell_id)}


def parse_ports_table(listing: Mapping[str, Any] | None) -> PortsTable:
    """The publications of an ``nft -j list table`` answer (None: no table)."""
    if listing is None:
        return PortsTable(exists=False)
    chains: set[str] = set()
    jumps: dict[str, list[int]] = {}
    owners: dict[str, str] = {}
    held: dict[str, list[str]] = {}
    sets: dict[str, set[str]] = {BRIDGE_SET: set(), SPACE_BRIDGE_SET: set()}
    guard_drops = 0
    for item in listing.get("nftables", ()):
        if "chain" in item:
            chains.add(str(item["chain"]["name"]))
        if item.get("set", {}).get("name") in sets:
            sets[item["set"]["name"]].update(str(name) for name in item["set"].get("elem", ()))
        rule = item.get("rule")
        if not rule:
            continue
        chain = str(rule.get("chain", ""))
        if chain == DNAT_CHAIN:
            for expr in rule.get("expr", ()):
                target = expr.get("jump", {}).get("target") if isinstance(expr, dict) else None
                if isinstance(target, str):
                    jumps.setdefault(target, []).append(int(rule["handle"]))
                    owners[target] = str(rule.get("comment", target))
        elif chain.startswith(CELL_CHAIN_PREFIX) and "comment" in rule:
            held.setdefault(chain, []).append(str(rule["comment"]))
        elif chain == GUARD_CHAIN and any("drop" in expr for expr in rule.get("expr", ())):
            guard_drops += 1
    return PortsTable(
        exists=True,
        chains=frozenset(chains),
        jumps={k: tuple(v) for k, v in jumps.items()},
        owners=owners,
        held={k: tuple(v) for k, v in held.items()},
        bridges=frozenset(sets[BRIDGE_SET]),
        space_bridges=frozenset(sets[SPACE_BRIDGE_SET]),
        guard_drops=guard_drops,
    )


def _socket_address(text: str) -> tuple[bool, IPv4Address | None]:
    """A /proc/net address (hex, each 32-bit word in host order): whether IPv4 reaches it,
    and its IPv4 address (None: every address, IPv4's or dual-stack IPv6's unspecified)."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        v4 = IPv4Address(words)
        return True, None if v4.is_unspecified else v4
    v6 = IPv6Address(words)
    if v6.is_unspecified:
        return True, None
    return v6.ipv4_mapped is not None, v6.ipv4_mapped


def parse_host_sockets(protocol: str, listing: str) -> list[HostPort]:
    """The ports a /proc/net/{tcp,udp}[6] listing shows held over IPv4 (pure)."""
    held = []
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != _BOUND_STATES[protocol]:
            continue
        address, _, port = fields[1].partition(":")
        try:
            reachable, host_ip = _socket_address(address)
            number = int(port, 16)
        except ValueError:
            continue
        if reachable:
            held.append(HostPort(protocol, number, host_ip))
    return held


def read_host_sockets() -> list[HostPort]:
    """The TCP and UDP ports processes of this network namespace hold (blocking)."""
    held: list[HostPort] = []
    for protocol in _BOUND_STATES:
        for name in (protocol, f"{protocol}6"):
            try:
                listing = (_PROC_NET / name).read_text(encoding="ascii")
            except OSError:
                continue
            held += parse_host_sockets(protocol, listing)
    return held


def read_host_addresses() -> frozenset[IPv4Address]:
    """The IPv4 addresses of this network namespace's interfaces (blocking: netlink)."""
    with IPRoute() as ipr:
        return frozenset(
            IPv4Address(str(local))
            for found in ipr.get_addr(family=socket.AF_INET)
            if (local := found.get_attr("IFA_LOCAL") or found.get_attr("IFA_ADDRESS"))
        )


def needs_a_host_address(publications: Sequence[Publication]) -> bool:
    """Whether any publication is on one host address (not every address, not loopback's,
    which every node has): only those are worth reading the node's addresses for (pure)."""
    return any(p.host_ip is not None and p.host_ip not in _LOOPBACK for p in publications)


def without_host_address(
    publications: Sequence[Publication], addresses: frozenset[IPv4Address]
) -> tuple[Publication, ...]:
    """The publications on a host address the node does not have (pure): their DNAT (``fib
    daddr type local``) takes no connection until the address is on the node."""
    return tuple(
        p
        for p in publications
        if p.host_ip is not None and p.host_ip not in _LOOPBACK and p.host_ip not in addresses
    )


def find_host_listener(
    sockets: Sequence[HostPort], cell: CellPorts, state: PortsTable
) -> PortConflictError | None:
    """The first publication, not published by the cell yet, whose port a process of the
    node holds: its DNAT would take that process's connections (pure)."""
    own = set(state.held.get(cell_chain(cell.cell_id), ()))
    for publication in cell.publications:
        if publication.key in own:
            continue
        for held in sockets:
            if publication.overlaps(held):
                where = f"{held.host_ip or 'every address'}:{held.host_port}"
                return PortConflictError(
                    publication, f"a process listening on {where}", held_by="in use"
                )
    return None


def find_conflict(state: PortsTable, cell: CellPorts) -> PortConflictError | None:
    """The first publication of ``cell`` another cell's chain already holds (pure)."""
    own = cell_chain(cell.cell_id)
    for chain, keys in sorted(state.held.items()):
        if chain == own:
            continue
        for key in keys:
            held = parse_key(key)
            if held is None:
                continue
            for publication in cell.publications:
                if publication.overlaps(held):
                    return PortConflictError(publication, state.owners.get(chain, chain))
    return None


def render_publish(*, table: str, cell: CellPorts, state: PortsTable) -> dict[str, Any]:
    """The one nft transaction that installs or replaces ``cell``'s publications (pure).

    Its chain is filled before the jump to it is added, so no packet sees a partial list.
    """
    chain = cell_chain(cell.cell_id)
    commands = [
        *_shared_commands(table),
        {"add": {"chain": _ref(table=table, name=chain)}},
        {"flush": {"chain": _ref(table=table, name=chain)}},
    ]
    for publication in sorted(set(cell.publications)):
        expr = dnat_rule(publication, cell.address)
        commands.append(
            {"add": {"rule": _ref(table=table, chain=chain, comment=publication.key, expr=expr)}}
        )
    if chain not in state.jumps:
        comment = cell.owner[:_COMMENT_MAX]
        jump = [{"jump": {"target": chain}}]
        commands.append(
            {"add": {"rule": _ref(table=table, chain=DNAT_CHAIN, comment=comment, expr=jump)}}
        )
    commands.append({"add": {"element": _ref(table=table, name=BRIDGE_SET, elem=[cell.bridge])}})
    return {"nftables": commands}


def render_release(*, table: str, cell_id: str, state: PortsTable) -> dict[str, Any] | None:
    """The transaction that removes a cell's publications, and the shared chains and set
    with the last cell's; None when the cell has nothing published (pure)."""
    chain = cell_chain(cell_id)
    if chain not in state.chains and chain not in state.jumps:
        return None
    commands: list[dict[str, Any]] = [
        {"delete": {"rule": _ref(table=table, chain=DNAT_CHAIN, handle=handle)}}
        for handle in state.jumps.get(chain, ())
    ]
    if chain in state.chains:
        commands += [
            {"flush": {"chain": _ref(table=table, name=chain)}},
            {"delete": {"chain": _ref(table=table, name=chain)}},
        ]
    if state.releases_the_guard(cell_id):
        for name in (*BASE_CHAINS, DNAT_CHAIN):
            if name in state.chains:
                commands += [
                    {"flush": {"chain": _ref(table=table, name=name)}},
                    {"delete": {"chain": _ref(table=table, name=name)}},
                ]
        commands.append({"delete": {"set": _ref(table=table, name=BRIDGE_SET)}})
    return {"nftables": commands}


def _route_localnet(bridge: str) -> str | None:
    """The bridge's ``route_localnet`` ("0" or "1"); None when there is no such bridge."""
    try:
        return (_SYSCTL_DIR / bridge / "route_localnet").read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None


def _set_route_localnet(bridge: str, value: str) -> None:
    path = _SYSCTL_DIR / bridge / "route_localnet"
    try:
        if path.read_text(encoding="ascii").strip() == value:
            return
        path.write_text(value + "\n", encoding="ascii")
    except OSError as error:
        if value == "0" and isinstance(error, FileNotFoundError):
            return  # the bridge is gone, and its setting with it
        raise NetworkError(
            f"cannot set {path} (loopback access to published ports): {error}"
        ) from error


def _enable_route_localnet(bridge: str) -> None:
    _set_route_localnet(bridge, "1")


def close_open(bridges: Iterable[str]) -> list[str]:
    """``route_localnet`` back to 0 on those of ``bridges`` where it is 1; those (blocking).

    Without a look at the table: for the moment the node learns that ``ports-guard`` went,
    before anything else runs (``controllers.nftkeeper``)."""
    opened = [b for b in sorted(set(bridges)) if _route_localnet(b) == "1"]
    disable_route_localnet(opened)
    return opened


def disable_route_localnet(bridges: Iterable[str]) -> None:
    """``route_localnet`` back to 0 on ``bridges`` (a bridge that is gone is skipped).

    Before ``ports-guard`` goes: without it, a cell of a bridge left at 1 sends packets to
    the host's 127.0.0.1 and reaches what listens only there (CVE-2020-8558)."""
    for bridge in sorted(bridges):
        _set_route_localnet(bridge, "0")


class NftPorts:
    """Publishes and releases cells' ports in one nft table (one transaction per change)."""

    def __init__(self, *, table: str, nft_binary: str | None = None) -> None:
        self.table = table
        self._nft = NftTable(table, nft_binary=nft_binary)
        # Listing, checking for a conflict and changing the table must not interleave.
        self._lock = asyncio.Lock()

    async def publish(self, cell: CellPorts) -> None:
        """Install ``cell``'s publications (replacing what it had); with none, release it.

        Raises PortConflictError, changing nothing, when another cell holds one of them, or
        a process of the node listens on one it does not publish yet (the DNAT would take
        that process's connections: sshd's, etcd's on 127.0.0.1).
        """
        if not cell.publications:
            await self.release(cell.cell_id)
            return
        async with self._lock:
            state = parse_ports_table(await self._list())
            conflict = find_conflict(state, cell) or find_host_listener(
                await asyncio.to_thread(read_host_sockets), cell, state
            )
            if conflict is not None:
                raise conflict
            batch = render_publish(table=self.table, cell=cell, state=state)
            await self._apply(batch, action=f"publish the ports of {cell.owner}")
            if any(p.reaches_loopback for p in cell.publications):
                # After the guard chain exists: never a moment without it.
                await asyncio.to_thread(_enable_route_localnet, cell.bridge)

    async def release(self, cell_id: str) -> bool:
        """Remove the cell's publications; whether it had any."""
        async with self._lock:
            state = parse_ports_table(await self._list())
            batch = render_release(table=self.table, cell_id=cell_id, state=state)
            if batch is None:
                return False
            if state.releases_the_guard(cell_id):
                # Off before the guard goes: never a moment of route_localnet without it.
                await asyncio.to_thread(disable_route_localnet, state.bridges)
            await self._apply(batch, action=f"release the ports of {cell_id}")
            return True

    async def close_unguarded(self, bridges: Iterable[str] = ()) -> list[str]:
        """``route_localnet`` back to 0 on the node's bridges (those of the table's egress
        chains, and ``bridges``) that a whole ``ports-guard`` does not cover; the bridges it
        closed. Run at start (an older kukeond left them at 1 when the guard went with its
        last publication) and when the table was changed behind kukeond's back (``nft flush
        ruleset`` took the guard): a publication opens its bridge again once the guard is
        back."""
        async with self._lock:
            state = parse_ports_table(await self._list())

            def close() -> list[str]:
                unguarded = sorted((state.space_bridges | set(bridges)) - state.guarded)
                left_open = [b for b in unguarded if _route_localnet(b) == "1"]
                disable_route_localnet(left_open)
                return left_open

            return await asyncio.to_thread(close)

    async def published(self) -> PortsTable:
        return parse_ports_table(await self._list())

    async def _list(self) -> Mapping[str, Any] | None:
        return await self._nft.listing()

    async def _apply(self, batch: Mapping[str, Any], *, action: str) -> None:
        await self._nft.apply(batch, action=action)
