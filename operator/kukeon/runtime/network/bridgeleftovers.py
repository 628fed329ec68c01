"""Ports left on a space's bridge at its teardown, and what earlier teardowns left behind.

A space's network goes whole or not at all (``SpaceNetworks.remove_space_network``): a bridge
kept for its ports while its egress chain, conflist and subnet record went stayed on the
host for good, unfiltered, and no later pass could find it (the orphan collector finds a
half torn-down network by its subnet record). So the teardown first clears the bridge of
this node's own ports (:meth:`BridgeLeftovers.clear`), known by:

- its attachment records on the network (a cell whose teardown has not run or finished:
  removed as the cell's detach would, a CNI DEL for a CNI-made one);
- its leases there without a record (a kill -9 between the lease and the record): the host
  end has the in-process name (``veth.host_ifname``);
- the alias ``veth.owner_alias`` kukeond sets on the host ends and bridges it makes.

A port no kukeon made raises ``BridgeInUseError`` naming it, before anything is removed; one
with another node's alias (test fleets share the host's bridges) is left to that node.

:meth:`BridgeLeftovers.sweep` removes what teardowns of earlier versions left: idle bridges
and egress chains of spaces that exist nowhere (the orphan collector calls it each pass),
each with the two iptables FORWARD accepts of its bridge (``forward``), which outlive the
bridge they name. FORWARD accepts whose bridge and chain are both gone are not looked for:
a rule says nothing of the control plane that made it (another plane on the host names
its bridges in the same hashed form, and a space without cells has its accepts before its
bridge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.network import leases, veth
from kukeon.runtime.network.bridge import (
    bridge_name,
    bridge_port_aliases,
    bridge_ports,
    delete_link,
    idle_bridges,
    is_bridge_name,
)
from kukeon.runtime.network.egress import NftEgress
from kukeon.runtime.network.errors import BridgeInUseError, CniError
from kukeon.runtime.network.forward import ForwardAccepts
from kukeon.runtime.network.inprocess import Links
from kukeon.runtime.network.records import (
    DRIVER_NETLINK,
    PRIMARY_IFNAME,
    AttachmentRecord,
    AttachmentRecords,
)
from kukeon.runtime.network.subnets import SubnetStore

if TYPE_CHECKING:
    from kukeon.runtime.network.space import NetworkSettings

log = logging.getLogger(__name__)


@dataclass
class BridgeLeftovers:
    settings: NetworkSettings
    records: AttachmentRecords
    links: Links
    egress: NftEgress
    subnets: SubnetStore
    remove: Callable[[AttachmentRecord], Awaitable[None]]
    """Undo one recorded attachment, as the cell's detach does."""
    forward: ForwardAccepts

    async def clear(self, bridge: str) -> None:
        """Remove this node's ports from ``bridge``; raise ``BridgeInUseError`` naming the
        ports no kukeon made."""
        ports = await bridge_port_aliases(bridge)
        if not ports:
            return
        own = await self._own_ports(bridge)
        for name, alias in ports.items():
            if name not in own and alias != self.settings.port_alias:
                continue
            found = own.get(name)
            log.info("removing port %s of bridge %s (left by %s)", name, bridge, found or "us")
            if isinstance(found, AttachmentRecord):
                with contextlib.suppress(CniError):  # the link goes by name below anyway
                    await self.remove(found)
            await run_on_host_thread(self.links.remove_port, name)
        left = await bridge_port_aliases(bridge)
        foreign = sorted(
            name for name, alias in left.items() if not alias.startswith(veth.PORT_ALIAS_PREFIX)
        )
        if foreign:
            raise BridgeInUseError(bridge=bridge, ports=tuple(foreign))

    async def _own_ports(self, bridge: str) -> dict[str, AttachmentRecord | str]:
        """The host ends this node made on ``bridge``'s network: by record, or by lease
        (the in-process name of a lease without a record)."""
        own: dict[str, AttachmentRecord | str] = {}
        holders = await asyncio.to_thread(leases.holders, self.settings.ipam_dir / bridge)
        for cell_id, ifname in holders:
            own[veth.host_ifname(cell_id, ifname or PRIMARY_IFNAME)] = cell_id
        for cell_id, ifname in await self.records.on_network(bridge):
            record = await self.records.load(cell_id, ifname)
            if record is None:
                continue
            if record.driver == DRIVER_NETLINK:
                own[veth.host_ifname(cell_id, ifname)] = record
                continue
            for interface in record.result.interfaces:
                if interface.sandbox is None and interface.name != bridge:
                    own[interface.name] = record
        return own

    async def sweep(self, live: Callable[[], Awaitable[Collection[str]]] | None) -> list[str]:
        """Delete the bridges without a port named as this control plane names them, with
        an address in this node's subnet pool and this node's alias (or none, on the
        default control plane: made by an older kukeond), and the egress chains in this
        node's table, of no space holding a subnet record here nor among the bridges
        ``live`` gives (the spaces that exist). All are listed before the records and
        ``live`` are read: a space's record is taken before its chain and bridge are made.
        Deleting a bridge nothing uses is harmless even when mistaken: an attachment makes
        it again. What was removed, described."""
        settings = self.settings
        bridges = await idle_bridges(settings.subnet_pool)
        chains = (await self.egress.state()).bridges
        held = set()
        for key in await self.subnets.assignments():
            realm, _, space = key.partition("/")
            held.add(bridge_name(realm, space, settings.instance))
        # Without an alias (made by an older kukeond), only the default control plane's: a
        # plane with an instance tag may share its pool's range with another on the host.
        mine = {settings.port_alias} | ({""} if not settings.instance else set())
        idle = {
            bridge
            for bridge, alias in bridges.items()
            if is_bridge_name(bridge, settings.instance) and alias in mine
        }
        if not (idle | chains) - held:
            return []
        if live is not None:
            held |= set(await live())
        removed: list[str] = []
        for bridge in sorted(chains - held):
            if await self.egress.remove(bridge=bridge):
                log.info("removed the egress chain of bridge %s: no space of this node", bridge)
                removed.append(f"egress chain of {bridge}")
            removed += await self._remove_forward_accepts(bridge)
        for bridge in sorted(idle - held):
            if await bridge_ports(bridge):  # a cell attached since it was listed
                continue
            if await delete_link(bridge):
                log.info("removed bridge %s: no space of this node", bridge)
                removed.append(f"bridge {bridge}")
            if bridge not in chains:
                removed += await self._remove_forward_accepts(bridge)
        return removed

    async def _remove_forward_accepts(self, bridge: str) -> list[str]:
        """The FORWARD accepts of a bridge of no space, removed (as the space's teardown
        does: only where this node makes them)."""
        if not self.settings.include_firewall or not await self.forward.remove(bridge):
            return []
        log.info("removed the FORWARD accepts of bridge %s: no space of this node", bridge)
        return [f"FORWARD accepts of {bridge}"]
