"""The user namespace of a `hostUsers: false` cell: its realm's id range on this node.

Every container of such a cell runs in a user namespace of its own with the same mapping
(ids 0-65535 to the realm's range, `runtime.idranges`), on the image's rootfs shifted to the
range (`runtime.containerd.remap`); kukeond makes the cell's network namespace in the host's
user namespace and the containers join it (runc joins it before it makes the user
namespace). The files kukeond gives a container (its secret files, the tty wrapper's state)
are owned by the host ids its user maps to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kukeon.api import Cell
from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.idranges import IdRange

from .host import Host


async def cell_id_range(host: Host, cell: Cell) -> IdRange | None:
    """The range the cell's containers map their ids to; None for a cell of the host's
    users. Raises `IdRangeError` when the realm has none and none is free (a host fault,
    retried)."""
    if not cell.spec.in_user_namespace():
        return None
    return await run_on_host_thread(host.settings.id_ranges().ensure, cell.spec.realm_id)


def host_id(value: int, mappings: Sequence[Mapping[str, Any]] | None) -> int:
    """The host id of the container's id ``value`` under an OCI spec's mappings (itself
    when there are none: the host's user namespace)."""
    for mapping in mappings or ():
        start, size = int(mapping["containerID"]), int(mapping["size"])
        if start <= value < start + size:
            return int(mapping["hostID"]) + value - start
    if mappings:
        raise ValueError(f"id {value} is not mapped by {list(mappings)}")
    return value
