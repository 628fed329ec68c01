"""`resources.ephemeralStorageLimitBytes`: a container that writes past it into its own root
filesystem (its writable layer, containerd's overlay upper directory) is evicted as the
kubelet evicts: stopped, its status and a Warning Event saying `Evicted` with its usage and
limit, and not restarted whatever its restart policy; a container under its limit runs on.
"""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Cell, ContainerState, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, check_storage_every_second, container

pytestmark = pytest.mark.integration

LIMIT = 4 * 1024 * 1024
FILL = "dd if=/dev/zero of=/fill bs=1M count={mib} && sync; exec sleep 1000"


async def test_a_container_writing_past_its_limit_is_evicted(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    check_storage_every_second(k)
    resources = {"ephemeralStorageLimitBytes": LIMIT}
    over = container(
        k, "app", script=FILL.format(mib=16), resources=resources, restartPolicy="always",
        restartBackoffSeconds=1,
    )  # fmt: skip
    under = container(
        k, "app", script=FILL.format(mib=1), resources=resources, restartPolicy="always"
    )
    await k.apply(cell_doc(k, "small", [under], terminationGracePeriodSeconds=1))
    small = await k.wait_for(Kind.CELL, cell_key(k, "small"), state="Ready")
    assert isinstance(small, Cell)
    await k.apply(cell_doc(k, "fill", [over], terminationGracePeriodSeconds=1))

    evicted = await k.wait_for(
        Kind.CELL,
        cell_key(k, "fill"),
        until=lambda c: (
            bool(c.status.containers) and c.status.containers[0].state == ContainerState.FAILED
        ),
        within=60,
    )
    assert isinstance(evicted, Cell)
    status = evicted.status.containers[0]
    assert status.reason == "Evicted"
    message = status.message or ""
    assert "container app used" in message
    assert f"over its limit of {LIMIT} bytes" in message
    used = int(message.split(" used ")[1].split(" bytes")[0])
    assert used > LIMIT

    # Not restarted under `always` (a restart would find its layer full and write on).
    await asyncio.sleep(4)
    later = await k.registry.get(Kind.CELL, cell_key(k, "fill"))
    assert isinstance(later, Cell)
    assert later.status.containers[0].state == ContainerState.FAILED
    assert later.status.containers[0].restart_count == 0
    assert later.status.containers[0].reason == "Evicted"

    # The container under its limit runs on, the same task.
    still = await k.registry.get(Kind.CELL, cell_key(k, "small"))
    assert isinstance(still, Cell)
    kept = still.status.containers[0]
    assert kept.state == ContainerState.RUNNING
    assert kept.pid == small.status.containers[0].pid
    assert kept.restart_count == 0

    assert k.daemon.events is not None
    store = k.daemon.events

    async def evictions() -> list[tuple[str, str, str]]:
        listed = (await store.list(k.realm)).items
        return [
            (e.involved_object.name, str(e.type), e.message)
            for e in listed
            if str(e.reason) == "Evicted"
        ]

    for _ in range(50):  # the recorder writes beside the handlers
        if await evictions():
            break
        await asyncio.sleep(0.2)
    found = await evictions()
    assert [(name, kind) for name, kind, _ in found] == [("fill", "Warning")]
    assert f"over its limit of {LIMIT} bytes" in found[0][2]
