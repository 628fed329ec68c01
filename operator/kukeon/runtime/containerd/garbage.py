"""What kukeon left in containerd: its labelled containers, their tasks and snapshots.

A controller compares this with the cells it knows and removes the orphans (a crash between
creating a container and recording it, a cell deleted while the daemon was down).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kukeon.runtime.containerd.client import DEFAULT_SNAPSHOTTER
from kukeon.runtime.containerd.containers import MANAGED_FILTER, Container
from kukeon.runtime.containerd.snapshots import SnapshotInfo
from kukeon.runtime.containerd.tasks import TaskInfo

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient


@dataclass(frozen=True, slots=True)
class KukeonObjects:
    containers: list[Container] = field(default_factory=list)
    tasks: list[TaskInfo] = field(default_factory=list)
    snapshots: list[SnapshotInfo] = field(default_factory=list)


async def list_kukeon_objects(
    client: ContainerdClient, *, namespace: str, snapshotter: str = DEFAULT_SNAPSHOTTER
) -> KukeonObjects:
    """Every kukeon-labelled container in ``namespace``, its tasks, and labelled snapshots."""
    containers = await client.containers(namespace, snapshotter=snapshotter).list(MANAGED_FILTER)
    ids = {container.id for container in containers}
    tasks = [task for task in await client.tasks(namespace).list() if task.container_id in ids]
    snapshots = await client.snapshots(namespace, snapshotter=snapshotter).list(MANAGED_FILTER)
    return KukeonObjects(containers=containers, tasks=tasks, snapshots=snapshots)
