"""A cell's published ports: its containers' ``ports`` as DNAT to the cell's address.

Every container of a cell shares the root container's network namespace, so each entry of
any container's ``ports`` forwards a host port to the cell's one address. The cell
controller calls :func:`publish_ports` once the containers are converged (it returns their
statuses with ``ports`` filled in) and :func:`release_ports` when the cell goes. A marker
file per publishing cell (``<state-dir>/network/published/<cell id>``), written before its
rules and removed after them, tells a pass whether anything may be left to release, so a
cell that never had ports costs no ``nft`` call.

The API server refuses a host port another cell holds; two writes racing past that check
meet here: the node's nft table says which cell holds the port, and the later cell fails
with ``NetworkFailed`` naming the holder (and is retried) until the port is free.

A ``hostIP`` the node does not have is published all the same (a floating address may come
to it) but takes no connection until it is there: the API cannot know a node's addresses,
so the cell's status says it (:func:`missing_host_addresses`, reason ``HostAddressMissing``)
and the cell is looked at again as soon as the node's addresses change (``hostaddresses``
follows the kernel's notices), and every ``ADDRESS_RECHECK_SECONDS`` until the address is
there (the only look where the kernel refuses those notices).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from kukeon.api import Cell, ContainerStatus
from kukeon.api.container import PublishedPort, parse_port
from kukeon.runtime.containerd.specerrors import RuntimeSpecError
from kukeon.runtime.hostfiles import make_dirs
from kukeon.runtime.network import CellAttachment, cell_network_id, network_id_prefix
from kukeon.runtime.network.ports import (
    CellPorts,
    NftPorts,
    Protocol,
    Publication,
    needs_a_host_address,
    read_host_addresses,
    without_host_address,
)

from .host import Host

log = logging.getLogger(__name__)

HOST_ADDRESS_MISSING = "HostAddressMissing"
ADDRESS_RECHECK_SECONDS = 30.0
"""How often a cell publishing on an address its node lacks is looked at again besides
when the node's addresses change (``hostaddresses``): a notice lost, or none to be had."""

_ADAPTERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, NftPorts]] = (
    weakref.WeakKeyDictionary()
)


def ports_adapter(table: str) -> NftPorts:
    """The one adapter of ``table`` on the running loop (its lock orders every change)."""
    per_loop = _ADAPTERS.setdefault(asyncio.get_running_loop(), {})
    if table not in per_loop:
        per_loop[table] = NftPorts(table=table)
    return per_loop[table]


def container_publications(cell: Cell) -> dict[str, tuple[Publication, ...]]:
    """Each container's ``ports`` as publications (container id -> its own, deduplicated).

    Raises RuntimeSpecError naming the entry kukeond cannot publish (the API refuses them;
    a document written to etcd by hand may still hold one).
    """
    found: dict[str, tuple[Publication, ...]] = {}
    for container in cell.spec.containers:
        own: list[Publication] = []
        for index, entry in enumerate(container.ports):
            where = f"ports[{index}]"
            try:
                mapping = parse_port(entry)
                address = ip_address(mapping.host_ip) if mapping.host_ip else None
            except ValueError as error:
                raise RuntimeSpecError(
                    container=container.id, field=where, reason=str(error)
                ) from None
            if mapping.host_port is None:
                raise RuntimeSpecError(
                    container=container.id, field=where, reason="the host port must be given"
                )
            if address is not None and not isinstance(address, IPv4Address):
                raise RuntimeSpecError(
                    container=container.id, field=where, reason="only IPv4 host addresses"
                )
            host_ip = None if address is None or address.is_unspecified else address
            protocol: Protocol = "udp" if mapping.protocol == "udp" else "tcp"
            own.append(Publication(protocol, mapping.host_port, mapping.container_port, host_ip))
        found[container.id] = tuple(sorted(set(own)))
    return found


async def missing_host_addresses(cell: Cell, *, node: str) -> str | None:
    """What the cell publishes on host addresses this node does not have, as its status
    says it (None: nothing). Reads the node's addresses only for a cell publishing on one."""
    publications = [p for own in container_publications(cell).values() for p in own]
    if not needs_a_host_address(publications):
        return None
    missing = without_host_address(publications, await asyncio.to_thread(read_host_addresses))
    if not missing:
        return None
    said = "; ".join(
        f"host port {p.describe()}: {p.host_ip} is not an address of node {node}" for p in missing
    )
    return (
        f"{said}; no connection reaches the cell there until it is "
        "(looked at again when the node's addresses change)"
    )


def published_status(publication: Publication) -> PublishedPort:
    return PublishedPort(
        host_ip=str(publication.host_ip or "0.0.0.0"),
        host_port=publication.host_port,
        container_port=publication.container_port,
        protocol=publication.protocol,
    )


def _marker(host: Host, cell_id: str) -> Path:
    return host.settings.state_dir / "network" / "published" / cell_id


def _mark(path: Path) -> None:
    make_dirs(path.parent)
    path.touch(mode=0o600, exist_ok=True)


async def publish_ports(
    host: Host,
    cell: Cell,
    attachment: CellAttachment | None,
    statuses: Sequence[ContainerStatus],
) -> list[ContainerStatus]:
    """Publish the cell's ports (replacing what it published before; none: release them)
    and return ``statuses`` with each container's ``ports`` as published."""
    key = (cell.spec.realm_id, cell.spec.space_id, cell.spec.stack_id, cell.metadata.name)
    cell_id = cell_network_id(key, host.networks.settings.instance)
    per_container = container_publications(cell)
    publications = tuple(sorted({p for own in per_container.values() for p in own}))
    if not publications or attachment is None:
        # A cell in the host's network has no address to forward to; the API refuses ports
        # there, so only a spec that dropped them (or a hand-written document) gets here.
        await release_ports(host, key)
        return [status.model_copy(update={"ports": []}) for status in statuses]
    marker = _marker(host, cell_id)
    await asyncio.to_thread(_mark, marker)
    await ports_adapter(host.networks.settings.nft_table).publish(
        CellPorts(
            cell_id=cell_id,
            owner="cell " + "/".join(key),
            address=attachment.ip,
            bridge=attachment.bridge_name,
            publications=publications,
        )
    )
    return [
        status.model_copy(
            update={"ports": [published_status(p) for p in per_container.get(status.id, ())]}
        )
        for status in statuses
    ]


def publishing_cells(host: Host) -> list[tuple[str, ...]]:
    """The keys of the cells whose marker says they published ports here (blocking)."""
    prefix = network_id_prefix(host.networks.settings.instance)
    try:
        names = sorted(
            path.name for path in (host.settings.state_dir / "network" / "published").iterdir()
        )
    except FileNotFoundError:
        return []
    keys = (
        tuple(name.removeprefix(prefix).split("_")) for name in names if name.startswith(prefix)
    )
    return [key for key in keys if len(key) == 4]


async def close_unguarded_bridges(host: Host) -> list[str]:
    """At start: ``route_localnet`` back to 0 on the node's bridges that no published port
    needs it on any more and ``ports-guard`` does not cover (an older kukeond left them so:
    their cells reached the host's 127.0.0.1); the bridges it closed. Never raises: a
    failure is logged, and the start goes on."""
    try:
        closed = await ports_adapter(host.networks.settings.nft_table).close_unguarded()
    except Exception:
        log.exception("setting route_localnet back to 0 on unguarded bridges failed")
        return []
    if closed:
        log.warning(
            "route_localnet was 1 without the loopback guard on %s (left by an older "
            "kukeond: their cells reached the host's 127.0.0.1); set back to 0",
            ", ".join(closed),
        )
    return closed


async def release_ports(host: Host, key: tuple[str, ...]) -> bool:
    """Remove what the cell published on this node; whether it had published anything.

    The cell controller's finalize and the orphan collector (a cell whose document went
    while this node was away) call it."""
    cell_id = cell_network_id(key, host.networks.settings.instance)
    marker = _marker(host, cell_id)
    if not await asyncio.to_thread(marker.exists):
        return False
    released = await ports_adapter(host.networks.settings.nft_table).release(cell_id)
    await asyncio.to_thread(marker.unlink, missing_ok=True)
    return released
