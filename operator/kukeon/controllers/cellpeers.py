"""Cells resolve each other by name: the peers in a cell's ``/etc/hosts``.

A cell's hosts file lists, beside its own names, every cell of this node on one of its
networks (its space's, and each space its containers join with ``networks``; itself too,
harmlessly, so each network's list is rendered once): the cell's name, ``<name>.<stack>``
(unique in a space, where two stacks may each hold a ``web``), its containers'
``networksAliases``, and for a CellSet's replica the set's name (and ``<set>.<stack>``), on
its address in that network, as compose's service names resolve.
Cells of other nodes are not listed: a space's network is a bridge of each node, and
another node's cell addresses are not reachable from here.

:class:`CellPeers` keeps the members of each space network from the operator's cell watch
(no list or watch of its own). A cell's pass renders its own file with them; a change of a
member (an address, an alias, a cell going) rewrites the files of the cells that share its
networks, coalesced: a burst of cells starting rewrites each file a few times, not once per
cell. The rewrite keeps the file's inode (the containers' bind mounts hold it) and never
creates a file or directory, so a cell removed meanwhile is left removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from kukeon.api import AnyResource, Cell, key_of
from kukeon.api.cellset import CELLSET_LABEL
from kukeon.framework import ConvergeGate
from kukeon.runtime.network.hosts import render_hosts, validate_hostname

from .cellfiles import CellFiles

log = logging.getLogger(__name__)

CellKey = tuple[str, str, str, str]
SpaceKey = tuple[str, str]
IPAddress = IPv4Address | IPv6Address
HostEntry = tuple[str, IPAddress]

COALESCE_SECONDS = 0.3
"""How long a change waits for the others of its burst before the files are rewritten."""
SECONDS_PER_FILE = 0.005
"""After a round of N files, the next waits at least N times this (1,000 cells: 5 s)."""


@dataclass(frozen=True)
class Member:
    """A cell with an address here: its names (own first) and its address per network."""

    names: tuple[str, ...]
    addresses: tuple[tuple[SpaceKey, IPAddress], ...]

    def on(self, space: SpaceKey) -> IPAddress | None:
        return next((ip for where, ip in self.addresses if where == space), None)


def _valid_names(names: Iterable[str]) -> tuple[str, ...]:
    # One cell's bad alias must not break the hosts file of every cell beside it.
    kept: list[str] = []
    for name in names:
        try:
            validate_hostname(name)
        except ValueError:
            continue
        if name not in kept:
            kept.append(name)
    return tuple(kept)


def member_of(cell: Cell) -> Member | None:
    """What the cell's peers list; None while it has no address (or runs on the host's
    network)."""
    realm, space = cell.spec.realm_id or "", cell.spec.space_id or ""
    addresses: list[tuple[SpaceKey, IPAddress]] = []
    network = cell.status.network
    for interface in network.interfaces:
        if interface.space and interface.ip:
            addresses.append(((realm, interface.space), ip_address(interface.ip)))
    if not addresses and network.ip:
        addresses.append(((realm, space), ip_address(network.ip)))
    if not addresses:
        return None
    name, stack = cell.metadata.name, cell.spec.stack_id or ""
    aliases = sorted({a for c in cell.spec.containers for a in c.networks_aliases})
    names = [name, f"{name}.{stack}", *aliases]
    owner = cell.metadata.labels.get(CELLSET_LABEL)
    if owner:  # a CellSet's name reaches its replicas, as a compose service's does
        names += [owner, f"{owner}.{stack}"]
    return Member(names=_valid_names(names), addresses=tuple(addresses))


def networks_of(cell: Cell) -> list[SpaceKey]:
    """The space networks the cell is on, by its spec (its first pass has no address yet)."""
    own: SpaceKey = (cell.spec.realm_id or "", cell.spec.space_id or "")
    return [own, *sorted(cell.spec.joined_space_keys() - {own})]


def render_cell_hosts(cell: Cell, ip: IPAddress | None, peers: str) -> str:
    """The cell's hosts file: its own names on ``ip`` (`render_hosts`), then ``peers``
    (:meth:`CellPeers.peers_text`, whose names were checked once, when listed)."""
    aliases = sorted({alias for c in cell.spec.containers for alias in c.networks_aliases})
    return render_hosts(cell_name=cell.metadata.name, ip=ip, aliases=aliases) + peers


def rewrite_in_place(path: Path, text: str) -> bool:
    """Rewrite an existing hosts file keeping its inode; False (nothing made) when it is gone."""
    try:
        with open(path, "r+", encoding="utf-8") as handle:
            handle.write(text)
            handle.truncate()
    except FileNotFoundError:
        return False
    return True


class CellPeers:
    def __init__(self, *, node: str, state_dir: Path) -> None:
        self.node = node
        self.state_dir = state_dir
        self._cells: dict[CellKey, Cell] = {}
        self._members: dict[CellKey, Member] = {}
        self._in_space: dict[SpaceKey, set[CellKey]] = {}
        self._dirty: set[SpaceKey] = set()
        self._blocks: dict[SpaceKey, tuple[list[HostEntry], str]] = {}
        self._changed = asyncio.Event()
        self.gate = ConvergeGate()
        """No hosts file is written while closed; what changed meanwhile is, once open."""

    def changed(self, obj: AnyResource, deleted: bool) -> None:
        """An operator change listener of cells (``Operator.on_change``)."""
        if not isinstance(obj, Cell):
            return
        key = key_of(obj)
        if len(key) != 4:
            return
        cell_key: CellKey = (key[0], key[1], key[2], key[3])
        here = (
            not deleted
            and obj.spec.node_name == self.node
            and obj.metadata.deletion_timestamp is None
        )
        member = member_of(obj) if here else None
        before = self._members.get(cell_key)
        if member == before:
            if member is not None:
                self._cells[cell_key] = obj
            return
        for space, _ in before.addresses if before else ():
            self._in_space.get(space, set()).discard(cell_key)
            self._dirty.add(space)
            self._blocks.pop(space, None)
        if member is None:
            self._members.pop(cell_key, None)
            self._cells.pop(cell_key, None)
        else:
            self._members[cell_key] = member
            self._cells[cell_key] = obj
            for space, _ in member.addresses:
                self._in_space.setdefault(space, set()).add(cell_key)
                self._dirty.add(space)
                self._blocks.pop(space, None)
        self._changed.set()

    def hosts_of(self, cell: Cell) -> list[HostEntry]:
        """The entries of the cell's networks for its hosts file: every cell on one of them
        (itself too, harmlessly), on its address in that network, its first network's first."""
        return [entry for space in networks_of(cell) for entry in self._block(space)[0]]

    def peers_text(self, cell: Cell) -> str:
        """:meth:`hosts_of` as the lines of a hosts file."""
        return "".join(self._block(space)[1] for space in networks_of(cell))

    def _block(self, space: SpaceKey) -> tuple[list[HostEntry], str]:
        # Rendered once per change of the space, not once per cell that lists it: a round
        # of N files is N string joins, not N times N lines rendered.
        block = self._blocks.get(space)
        if block is None:
            entries: list[HostEntry] = []
            for peer in sorted(self._in_space.get(space, ())):
                member = self._members[peer]
                address = member.on(space)
                if address is not None:
                    entries.extend((name, address) for name in member.names)
            block = (entries, "".join(f"{address}\t{name}\n" for name, address in entries))
            self._blocks[space] = block
        return block

    def _file_of(self, key: CellKey) -> tuple[Path, str] | None:
        """The member's hosts file and what it holds now (None: no longer a member, or its
        own names cannot be written: its own pass says why, the others' files go on)."""
        cell, member = self._cells.get(key), self._members.get(key)
        if cell is None or member is None:
            return None
        own = member.on(networks_of(cell)[0])
        try:
            text = render_cell_hosts(cell, own, self.peers_text(cell))
        except ValueError as error:
            log.warning("the hosts file of cell %s: %s", "/".join(key), error)
            return None
        return CellFiles(self.state_dir, key).hosts, text

    async def follow(self) -> None:
        """Run until cancelled: after each burst of changes, rewrite the hosts file of every
        cell on a network whose members changed (all of a round's files in one thread)."""
        rewritten = 0
        while True:
            await self._changed.wait()
            await self.gate.wait_open()
            # A round's files cost about its size squared: a big space's rounds come
            # further apart, so a burst of its cells does not rewrite them all each time.
            await asyncio.sleep(max(COALESCE_SECONDS, rewritten * SECONDS_PER_FILE))
            self._changed.clear()
            spaces, self._dirty = self._dirty, set()
            cells = sorted({key for space in spaces for key in self._in_space.get(space, ())})
            files = [found for key in cells if (found := self._file_of(key)) is not None]
            rewritten = len(files)
            if files:
                await asyncio.to_thread(_rewrite_all, files)


def _rewrite_all(files: list[tuple[Path, str]]) -> None:
    for path, text in files:
        try:
            rewrite_in_place(path, text)
        except OSError as error:
            log.warning("rewriting %s: %s", path, error)
