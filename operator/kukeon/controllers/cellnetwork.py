"""A cell's interfaces: its space's network (or its root container's own), and the spaces
its containers' ``networks`` join.

Every container of a cell shares the root container's network namespace, so what the
containers ask of the network is the cell's:

- ``eth0`` is on the cell's space's network, or on the CNI configuration the root
  container's ``cniConfigPath`` names (it replaces the space's network for this cell; the
  API refuses it on other containers). A space's network is attached by kukeond itself over
  netlink (``runtime.network.inprocess``) unless the space sets ``cniConfigPath``, whose
  cells keep the CNI plugins; the root container's own ``cniConfigPath`` is always CNI's;
- the ``networks`` of every container, merged (root container first, then the others in
  manifest order, each space once), are other spaces of the same realm whose networks the
  cell joins: ``eth1``, ``eth2``... in that order. A joined interface carries no default
  route (``joined_conflist``), so traffic leaving through it is bound for that space's
  subnet and enters the host from that space's bridge, where that space's egress chain
  (keyed on the bridge) applies; everything else leaves through ``eth0`` under the cell's
  own space's policy.

A joined space must be materialised on the cell's node: the cell-membership follower
counts the cell among that space's cells (``CellSpec.joined_space_keys``), so the node
builds it, and the cell waits for it to be Ready here; the space's teardown on the node
waits until no cell's interface is left on its network (``SpaceController``). A joined
space that is gone or being deleted is left (its interface deleted, so its own teardown
can go on) and the cell is Failed with a message naming the field, until the space exists
again or the spec stops naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kukeon.api import Cell, Kind, Space
from kukeon.api.cell import CellInterfaceStatus, CellNetworkStatus
from kukeon.framework import HandlerContext, WaitingError
from kukeon.framework.cache import revision_of
from kukeon.framework.errors import Awaited
from kukeon.runtime.network import CellAttachment, NetworkError, cell_network_id
from kukeon.store import NotFound

from .cellusers import cell_id_range
from .hierarchy import read, ready_here
from .host import Host
from .space import builtin_network, conflist_file

log = logging.getLogger(__name__)

PRIMARY_IFNAME = "eth0"


def joined_ifname(position: int) -> str:
    """The interface of the ``position``-th joined space (0-based): ``eth1``, ``eth2``..."""
    return f"eth{position + 1}"


def network_field(cell: Cell, space: str) -> str:
    """Where the cell's spec names ``space`` first, as a field path."""
    for index, container in enumerate(cell.spec.containers):
        if space in container.networks:
            return f"spec.containers[{index}].networks[{container.networks.index(space)}]"
    return "spec.containers[].networks"


class JoinedSpaceUnavailableError(NetworkError):
    """A space the cell's ``networks`` name is gone or being deleted."""


@dataclass(frozen=True)
class CellInterfaces:
    """What the cell is attached to on this node (nothing when every container is on the
    host's network)."""

    primary: CellAttachment | None = None
    primary_space: str | None = None
    """The space of ``eth0``; None when the root container's ``cniConfigPath`` replaced it."""
    joined: tuple[tuple[str, CellAttachment], ...] = ()
    """(space, attachment) of each joined space, in interface order."""

    def status(self) -> CellNetworkStatus:
        primary = self.primary
        interfaces = [
            CellInterfaceStatus(
                interface=primary.ifname,
                space=self.primary_space,
                network=primary.network_name,
                ip=str(primary.ip),
            )
        ] if primary is not None else []  # fmt: skip
        interfaces += [
            CellInterfaceStatus(
                interface=attachment.ifname,
                space=space,
                network=attachment.network_name,
                ip=str(attachment.ip),
            )
            for space, attachment in self.joined
        ]
        return CellNetworkStatus(
            bridge_name=primary.bridge_name if primary is not None else None,
            ip=str(primary.ip) if primary is not None else None,
            interfaces=interfaces,
        )


class CellNetworking:
    """Attaches a cell to its networks on this node, and leaves what it no longer names."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def _conflist(self, space: Space) -> Path:
        return conflist_file(
            space,
            default_dir=self.host.settings.cni_conf_dir,
            instance=self.host.networks.settings.instance,
        )

    async def make_namespace(self, cell: Cell, key: Sequence[str]) -> Path | None:
        """The cell's network namespace, before ``attach`` configures it (none when every
        container is on the host's network)."""
        if all(c.host_network for c in cell.spec.containers):
            return None
        networks = self.host.networks
        cell_id = cell_network_id(key, networks.settings.instance)
        id_range = await cell_id_range(self.host, cell)
        if id_range is None:
            return await networks.make_cell_netns(cell_id=cell_id)
        # hostUsers: false: owned by the cell's user namespace, which its containers join
        return await networks.make_cell_netns(cell_id=cell_id, id_range=id_range)

    async def attach(
        self, ctx: HandlerContext, cell: Cell, space: Space, key: Sequence[str]
    ) -> CellInterfaces:
        if all(c.host_network for c in cell.spec.containers):
            return CellInterfaces()
        networks = self.host.networks
        cell_id = cell_network_id(key, networks.settings.instance)
        own = cell.spec.root_container().cni_config_path
        primary = await networks.attach_cell(
            cell_id=cell_id,
            cni_config_path=Path(own) if own else self._conflist(space),
            builtin=not own and builtin_network(space),
        )
        joined: list[tuple[str, CellAttachment]] = []
        unavailable: list[str] = []
        wanted: set[str] = set()
        for position, name in enumerate(cell.spec.joined_spaces()):
            ifname = joined_ifname(position)
            wanted.add(ifname)
            other = await self._joined_space(ctx, cell, name)
            if isinstance(other, str):
                await networks.leave_network(cell_id=cell_id, ifname=ifname)
                unavailable.append(other)
                continue
            attachment = await networks.join_network(
                cell_id=cell_id,
                cni_config_path=self._conflist(other),
                ifname=ifname,
                builtin=builtin_network(other),
            )
            joined.append((name, attachment))
        await networks.leave_networks(cell_id=cell_id, keep=wanted)
        if unavailable:
            raise JoinedSpaceUnavailableError("; ".join(unavailable))
        return CellInterfaces(
            primary=primary,
            primary_space=None if own else space.metadata.name,
            joined=tuple(joined),
        )

    async def _joined_space(self, ctx: HandlerContext, cell: Cell, name: str) -> Space | str:
        """The joined space once Ready on this node, or why it can no longer be joined."""
        realm = cell.spec.realm_id
        key = (realm, name)
        where = network_field(cell, name)
        try:
            found = await read(ctx, Kind.SPACE, key)
        except NotFound:
            return f"{where}: space {name!r} of realm {realm!r} does not exist (any more)"
        if not isinstance(found, Space):
            raise TypeError(f"expected a Space at {realm}/{name}, got {found.kind}")
        if found.metadata.deletion_timestamp is not None:
            return f"{where}: space {name!r} of realm {realm!r} is being deleted"
        if not ready_here(found, ctx.node_name):
            raise WaitingError(
                f"waiting for space {realm}/{name} ({where}) to be Ready on node {ctx.node_name}",
                delay=self.host.settings.parent_wait_seconds,
                reason="NetworkNotReady",
                on=Awaited(Kind.SPACE, key, revision_of(found)),
            )
        return found
