"""containerd's task events bring the cell controller back at once.

Without this a container that exits would be noticed only at the next periodic resync.
A task exit or an OOM kill in a kukeon namespace names a containerd container; its labels
say which cell it belongs to, and that cell is queued for a reconcile (coalesced with any
other pending work on it by the framework). After a reconnect every cell is resynced,
since exits may have been missed while the stream was down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kukeon.api import Kind
from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.containers import (
    LABEL_CELL,
    LABEL_MANAGED,
    LABEL_REALM,
    LABEL_SPACE,
    LABEL_STACK,
)
from kukeon.runtime.containerd.errors import ContainerdError
from kukeon.runtime.containerd.events import (
    Subscribed,
    TaskExited,
    TaskOOM,
    topic_filter,
)

from .cellexec import LABEL_TRIAL

log = logging.getLogger(__name__)

Trigger = Callable[[Kind, tuple[str, ...]], object]
Resync = Callable[[], object]

WATCHED_TOPICS = ("/tasks/exit", "/tasks/oom")


async def follow_task_events(
    *, containerd: ContainerdClient, trigger: Trigger, resync: Resync
) -> None:
    """Run until cancelled: map every task exit/OOM of a kukeon container to its cell."""
    filters = [topic_filter(topic) for topic in WATCHED_TOPICS]
    async for event in containerd.events.subscribe(*filters):
        if isinstance(event, Subscribed):
            if event.reconnected:
                resync()  # exits may have happened while the stream was down
            continue
        if not isinstance(event, TaskExited | TaskOOM):
            continue
        try:
            container = await containerd.containers(event.namespace).get(event.container_id)
        except ContainerdError:
            continue  # already deleted, or not a container we can see
        labels = container.labels
        if labels.get(LABEL_MANAGED) != "true" or LABEL_TRIAL in labels:
            continue  # not a cell's, or a replacement's trial (`celltrial`): no news of it
        key = tuple(labels.get(name, "") for name in (LABEL_REALM, LABEL_SPACE, LABEL_STACK))
        cell = labels.get(LABEL_CELL, "")
        if all(key) and cell:
            log.debug("task event %s for cell %s", event.topic, "/".join((*key, cell)))
            trigger(Kind.CELL, (*key, cell))
