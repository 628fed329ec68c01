"""Removing what no document owns: containers and cell network attachments of this node.

Finalizers make orphans rare (a cell's document stays until its host resources are gone),
but a document can still disappear behind the daemon's back (removed by hand in etcd, a
cell reassigned to another node), and a crash can interrupt a teardown. At start and
periodically the node compares what it runs with what etcd says it should run and removes
the difference. Only objects this node made are considered: containers carry the node's
label, attachments are records in this node's state directory.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from kukeon.api import Cell, Kind
from kukeon.runtime.containerd.containers import (
    LABEL_CELL,
    LABEL_REALM,
    LABEL_SPACE,
    LABEL_STACK,
    MANAGED_FILTER,
    label_filter,
)
from kukeon.store import Registry

from .cell import LABEL_NODE, CellController, cell_key, network_id
from .host import Host

log = logging.getLogger("kukeon.controllers.gc")


async def owned_cells(registry: Registry, *, node_name: str) -> set[tuple[str, ...]]:
    cells = await registry.list(Kind.CELL)
    return {
        cell_key(cell)
        for cell in cells.items
        if isinstance(cell, Cell) and cell.spec.node_name in (None, node_name)
    }


async def collect_orphans(*, host: Host, registry: Registry, cells: CellController) -> list[str]:
    """Remove orphaned containers and attachments; returns what was removed, for the log."""
    wanted = await owned_cells(registry, node_name=host.settings.node_name)
    removed: list[str] = []
    node_filter = f"{MANAGED_FILTER},{label_filter({LABEL_NODE: host.settings.node_name})}"
    for namespace in await host.containerd.namespaces.list():
        containers = host.containerd.containers(namespace.name)
        for container in await containers.list(node_filter):
            labels = container.labels
            key = tuple(
                labels.get(n, "") for n in (LABEL_REALM, LABEL_SPACE, LABEL_STACK, LABEL_CELL)
            )
            if key in wanted:
                continue
            log.info("removing orphaned container %s/%s", namespace.name, container.id)
            await cells.remove_container(namespace.name, container.id)
            removed.append(f"container {namespace.name}/{container.id}")

    wanted_networks = {network_id(key) for key in wanted}
    records = host.networks.settings.attachments_dir
    attached = await asyncio.to_thread(_record_ids, records)
    for cell_id in attached - wanted_networks:
        log.info("removing orphaned network attachment %s", cell_id)
        await host.networks.detach_cell(cell_id=cell_id)
        removed.append(f"attachment {cell_id}")
    return removed


def _record_ids(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {path.stem for path in directory.glob("kukeon_*.json")}
