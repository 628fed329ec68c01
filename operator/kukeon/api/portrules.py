"""What kukeond can publish of a cell's ``ports``, judged from the cell alone.

A container's ``ports`` entry (docker's ``[hostIP:]hostPort:containerPort[/tcp|udp]``) is
published by the cell's node as DNAT to the cell's address (``runtime.network.ports``).
``port_errors`` names what it cannot publish: an entry without a host port (docker's "any
free port"; give one), an IPv6 host address (cells have IPv4 addresses only), a container in
the host's network (``hostNetwork: true``: its ports are the host's own already, there is
nothing to forward; Docker silently discards them, which is exactly what kukeon does not
do), and two entries of the cell claiming one host port. The API server refuses them
(``apiserver.portclaims``, 422; a set's template as the cells it makes) and kukectl before
it sends a cell or a set it made (``run -p``, ``create cellset -p``: exit 2), with the same
messages; whether another cell holds the port is the server's to say.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import NamedTuple

from kukeon.api.cell import Cell
from kukeon.api.cellset import CellSet
from kukeon.api.container import parse_port
from kukeon.api.imagefields import containers_naming_images
from kukeon.api.kinds import AnyResource, to_document
from kukeon.api.meta import quote
from kukeon.api.validation import FieldError, InvalidResource, display_name


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


def _entries(res: AnyResource) -> Iterator[tuple[str, str, bool]]:
    """(field path, entry, whether its container is in the host's network) of a cell's
    containers, or of a set's template (the cells it makes)."""
    if not isinstance(res, Cell | CellSet):
        return
    for path, container in containers_naming_images(res):
        for position, entry in enumerate(container.ports):
            yield f"{path}.ports[{position}]", entry, container.host_network


def claims(cell: AnyResource) -> list[Claim]:
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


def port_errors(cell: AnyResource) -> list[FieldError]:
    """What kukeond could not publish in the ``ports`` of a cell (or of a set's template),
    one error per entry."""
    errors: list[FieldError] = []
    for field, entry, host_network in _entries(cell):
        if host_network:
            why = (
                "a container in the host's network (hostNetwork: true) publishes nothing: "
                "its ports are the host's already; remove ports or hostNetwork"
            )
            errors.append(FieldError(field, why))
            continue
        mapping = parse_port(entry)  # the model validated it
        if mapping.host_port is None:
            why = f"{quote(entry)} gives no host port: write hostPort:containerPort"
            errors.append(FieldError(field, why))
        elif mapping.host_ip and ipaddress.ip_address(mapping.host_ip).version != 4:
            errors.append(FieldError(field, "only IPv4 host addresses: cells have IPv4 addresses"))
    seen: list[Claim] = []
    for claim in claims(cell):
        twin = next((other for other in seen if other.overlaps(claim)), None)
        if twin is not None:
            why = f"host port {claim.describe()} is already claimed by {twin.field} ({twin.entry})"
            errors.append(FieldError(claim.field, why))
        seen.append(claim)
    return errors


def refuse_unpublishable_ports(res: AnyResource) -> None:
    """InvalidResource naming each entry of a cell's (or a set template's) ``ports`` kukeond
    cannot publish: what kukectl checks before it sends a cell or a set it made, each line
    the API server's cause."""
    errors = port_errors(res)
    if errors:
        raise InvalidResource(res.kind.value, display_name(res.kind, to_document(res)), errors)
