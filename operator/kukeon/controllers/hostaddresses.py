"""Cells publishing on a host address looked at again the moment the node's addresses change.

A port published on a ``hostIP`` the node does not have takes no connection until the
address is there, and the cell's status says so (``HostAddressMissing``, ``cellports``).
Before, nothing told kukeond that the address came (a floating address moved to the node, an
interface brought up late): the cell was looked at again every ``ADDRESS_RECHECK_SECONDS``
(30 s), so its status said the address was missing for up to that long after it came.

:class:`HostAddressFollower` follows the kernel's notices of IPv4 addresses added to or
removed from the node's interfaces (``runtime.network.addrwatch``: no polling, nothing costs
while no address changes). After a change, and a short settling (one ``ip addr`` or a DHCP
lease is several notices), it triggers a pass of every cell that published ports here
(their markers) and publishes one on a specific host address (its spec, as etcd has it):
the pass reads the addresses and sets the status, the one path that writes it. An address
that went is said as soon, the same way. Where the kernel refuses the group, the follower
ends (said in the log) and the periodic look stays the only one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kukeon.api import Cell, Kind
from kukeon.runtime.containerd.specerrors import RuntimeSpecError
from kukeon.runtime.network.addrwatch import AddressWatch
from kukeon.runtime.network.ports import needs_a_host_address
from kukeon.store import NotFound, Registry, StoreError

from .cellports import container_publications, publishing_cells
from .host import Host

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.2
SETTLE_MOST_SECONDS = 2.0
Trigger = Callable[[Kind, tuple[str, ...]], object]


class HostAddressFollower:
    """Follows the node's addresses; triggers the cells publishing on one (a supervised
    task: :meth:`run`)."""

    def __init__(self, *, host: Host, registry: Registry, trigger: Trigger) -> None:
        self.host = host
        self.registry = registry
        self.trigger = trigger

    async def run(self) -> None:
        """Follow the addresses until cancelled; return at once where netlink refuses."""
        watch = AddressWatch()
        try:
            watch.open()
        except OSError as error:
            log.warning(
                "cannot follow the node's addresses (%s): a port on a hostIP that comes later "
                "is noticed at the periodic look only",
                error,
            )
            return
        try:
            while True:
                await watch.wait()
                await _settled(watch)
                await self._trigger_waiting()
        finally:
            watch.close()

    async def _trigger_waiting(self) -> None:
        for key in await asyncio.to_thread(publishing_cells, self.host):
            try:
                cell = await self.registry.get(Kind.CELL, key)
            except NotFound:
                continue  # deleted meanwhile: its finalizer releases what it published
            except StoreError as error:  # unreadable, etcd away: the periodic look stays
                log.info("cell %s not looked at for the node's addresses: %s", key, error)
                continue
            if isinstance(cell, Cell) and _on_a_host_address(cell):
                self.trigger(Kind.CELL, key)


def _on_a_host_address(cell: Cell) -> bool:
    try:
        publications = [p for own in container_publications(cell).values() for p in own]
    except RuntimeSpecError:
        return False  # an entry kukeond cannot publish: the cell's pass says which
    return needs_a_host_address(publications)


async def _settled(watch: AddressWatch) -> None:
    """Until no further change came for ``SETTLE_SECONDS`` (``SETTLE_MOST_SECONDS`` at
    most: addresses that never stop changing still get their cells looked at)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_MOST_SECONDS
    while (left := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(min(SETTLE_SECONDS, left)):
                await watch.wait()
        except TimeoutError:
            return
