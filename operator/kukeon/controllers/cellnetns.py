"""A running cell's network namespace taken back when its file no longer holds it.

A cell's namespace is bound at a file kukeond names (``runtime.network.netns``); its tasks
join it when they are created and keep it alive whatever happens to the file. If the file
is unmounted behind kukeond's back while a task runs (an operator's cleanup, a script
sweeping ``/run/netns``), a pass would make a new, empty namespace there and attach it:
the new veth pair replaces the old one, whose end inside the task's namespace goes with
it, and the running workload is left with loopback only while its status says Ready.
Instead each pass compares the path's namespace with the ones the cell's reported pids
are in, and binds the running task's own namespace at the path again: its recorded
attachment is found intact in it (or, when a pass had raced the removal and attached a
new namespace meanwhile, repaired in it), and a Warning Event says so."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from kukeon.api import Cell
from kukeon.runtime.containerd import TaskStatus
from kukeon.runtime.network import cell_network_id

from .cellexec import CellKey
from .cellnetwork import CellNetworking
from .cellstate import containerd_container_id
from .host import Host

logger = logging.getLogger(__name__)


def cell_netns_path(host: Host, cell: Cell, key: CellKey) -> str | None:
    """The network namespace `CellNetworking.attach` gives the cell (none for a cell whose
    every container is on the host's network)."""
    if all(c.host_network for c in cell.spec.containers):
        return None
    networks = host.networks
    return str(networks.cell_netns_path(cell_network_id(key, networks.settings.instance)))


async def cell_namespace(
    host: Host, cell: Cell, key: CellKey, namespace: str, recovered: Callable[[str], None]
) -> Path | None:
    """``CellNetworking.make_namespace``, after ``take_back_namespace``; ``recovered`` is
    told why when a namespace was taken back."""
    if taken := await take_back_namespace(host, cell, key, namespace):
        recovered(
            "its network namespace file no longer held its running containers' namespace: "
            f"taken back from container {taken}"
        )
    return await CellNetworking(host).make_namespace(cell, key)


async def take_back_namespace(host: Host, cell: Cell, key: CellKey, namespace: str) -> str | None:
    """Make the cell's namespace path hold its running tasks' namespace again when it no
    longer does; the container whose task it was taken from, else None.

    Told by the pids the cell's status last reported (a few stats per pass); containerd is
    asked for the tasks only when one of them is in another namespace than the path's."""
    _, space, stack, cell_name = key
    ids = {
        containerd_container_id(space=space, stack=stack, cell=cell_name, container=c.id): c.id
        for c in cell.spec.containers
        if not c.host_network
    }
    networks = host.networks
    name = cell_network_id(key, networks.settings.instance)
    reported = [s.pid for s in cell.status.containers if s.pid and s.id in ids.values()]
    if all(networks.netns.holds(name, pid) in (True, None) for pid in reported):
        return None  # none reported, or each in the path's namespace, or gone
    running = [
        task
        for task in await host.containerd.tasks(namespace).list()
        if task.container_id in ids and task.status == TaskStatus.RUNNING and task.pid > 0
    ]
    for task in running:
        if not await networks.netns.bind_from(name, task.pid):
            return None  # already its namespace (the status's pid was another), or it ended
        logger.warning(
            "cell %s: its network namespace file no longer held the namespace container %s "
            "runs in; bound that one at it again",
            "/".join(key),
            ids[task.container_id],
        )
        return ids[task.container_id]
    return None
