"""A cell's `ports`: what the API accepts, and which host ports another cell already holds.

A container's ``ports`` entry (docker's ``[hostIP:]hostPort:containerPort[/tcp|udp]``) is
published by the cell's node as DNAT to the cell's address (``runtime.network.ports``).
Before a write is stored:

- ``port_causes`` refuses (422, naming each entry) what kukeond cannot publish: an entry
  without a host port (docker's "any free port"; give one), an IPv6 host address (cells
  have IPv4 addresses only), a container in the host's network (``hostNetwork: true``: its
  ports are the host's own already, there is nothing to forward; Docker silently discards
  them, which is exactly what kukeon does not do), and two entries of the cell claiming one
  host port.
- ``check_port_claims`` refuses (409 ``PortConflict``, naming the cell that holds it) a host
  port another cell publishes: same protocol and port, and the same host address or either
  of them every address (``0.0.0.0``). Host ports are per node, so two cells pinned to
  different nodes (``spec.nodeName``) do not conflict; a cell not placed yet may land
  anywhere, so it conflicts with every other.

The check reads the stored cells, so two writes racing past it can both be stored; the
node decides between them (the first one published holds the port, the other fails with
``NetworkFailed`` naming the holder, see ``controllers.cellports``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import NamedTuple

from kukeon.api import AnyResource, Cell, Kind, key_of
from kukeon.api.container import parse_port
from kukeon.api.meta import quote
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.status import ApiError, Cause
from kukeon.client.paths import display_key


class Claim(NamedTuple):
    """One entry of ``ports``: the host port it claims, and where it is written."""

    protocol: str
    host_port: int
    host_ip: str | None
    """None: every address."""
    field: str
    entry: str

    def overlaps(self, other: Claim) -> bool:
        return (
            self.protocol == other.protocol
            and self.host_port == other.host_port
            and (self.host_ip is None or other.host_ip is None or self.host_ip == other.host_ip)
        )

    def describe(self) -> str:
        return f"{self.host_port}/{self.protocol} on {self.host_ip or 'every address'}"


def _entries(cell: Cell) -> Iterator[tuple[str, str, bool]]:
    """(field path, entry, whether its container is in the host's network)."""
    for index, container in enumerate(cell.spec.containers):
        for position, entry in enumerate(container.ports):
            yield f"spec.containers[{index}].ports[{position}]", entry, container.host_network


def claims(cell: Cell) -> list[Claim]:
    """The host ports the cell's entries claim (entries kukeond cannot publish left out)."""
    found = []
    for field, entry, host_network in _entries(cell):
        try:
            mapping = parse_port(entry)
        except ValueError:
            continue
        if host_network or mapping.host_port is None:
            continue
        address = ipaddress.ip_address(mapping.host_ip) if mapping.host_ip else None
        if address is not None and address.version != 4:
            continue
        host_ip = None if address is None or address.is_unspecified else str(address)
        found.append(Claim(mapping.protocol, mapping.host_port, host_ip, field, entry))
    return found


def _publishing_view(cell: Cell) -> list[tuple[list[str], bool]]:
    return [(list(c.ports), c.host_network) for c in cell.spec.containers]


def port_causes(res: AnyResource, current: AnyResource | None) -> list[Cause]:
    """What kukeond could not publish in a cell's ``ports``, one Cause per entry.

    A write that leaves every container's ports (and hostNetwork) as stored is not
    checked, so a document stored before these rules stays writable.
    """
    if not isinstance(res, Cell):
        return []
    if isinstance(current, Cell) and _publishing_view(current) == _publishing_view(res):
        return []
    causes: list[Cause] = []
    for field, entry, host_network in _entries(res):
        if host_network:
            why = (
                "a container in the host's network (hostNetwork: true) publishes nothing: "
                "its ports are the host's already; remove ports or hostNetwork"
            )
            causes.append(Cause(field, why))
            continue
        mapping = parse_port(entry)  # the model validated it
        if mapping.host_port is None:
            why = f"{quote(entry)} gives no host port: write hostPort:containerPort"
            causes.append(Cause(field, why))
        elif mapping.host_ip and ipaddress.ip_address(mapping.host_ip).version != 4:
            causes.append(Cause(field, "only IPv4 host addresses: cells have IPv4 addresses"))
    seen: list[Claim] = []
    for claim in claims(res):
        twin = next((other for other in seen if other.overlaps(claim)), None)
        if twin is not None:
            why = f"host port {claim.describe()} is already claimed by {twin.field} ({twin.entry})"
            causes.append(Cause(claim.field, why))
        seen.append(claim)
    return causes


def _may_share_a_node(one: Cell, other: Cell) -> bool:
    mine, theirs = one.spec.node_name, other.spec.node_name
    return not (mine and theirs and mine != theirs)


async def check_port_claims(
    registry: RegistryApi, res: AnyResource, current: AnyResource | None
) -> None:
    """Refuse (409) a cell whose ports another cell of its node already publishes."""
    if not isinstance(res, Cell):
        return
    mine = claims(res)
    if not mine:
        return
    if (
        isinstance(current, Cell)
        and current.spec.node_name == res.spec.node_name
        and claims(current) == mine
    ):
        return  # nothing new is claimed (a metadata write, a restart, another field)
    key = key_of(res)
    stored = await registry.list(Kind.CELL)
    causes: list[Cause] = []
    for other in stored.items:
        if not isinstance(other, Cell) or key_of(other) == key:
            continue
        if other.metadata.deletion_timestamp is not None or not _may_share_a_node(res, other):
            continue
        for claim in mine:
            held = next((c for c in claims(other) if c.overlaps(claim)), None)
            if held is not None:
                why = (
                    f"host port {claim.describe()} is already published by cell "
                    f'"{display_key(key_of(other))}" ({held.field}: {held.entry})'
                )
                causes.append(Cause(claim.field, why))
    if causes:
        raise ApiError(
            409,
            f'Cell "{display_key(key)}": ' + "; ".join(f"{c.field}: {c.message}" for c in causes),
            reason="PortConflict",
            kind=Kind.CELL.value,
            name=res.metadata.name,
            causes=causes,
        )
