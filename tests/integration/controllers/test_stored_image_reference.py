"""An upgrade must not stop workloads: a cell stored with an image its node no longer parses
(a bare 64-hex name, which the node once read as Docker Hub's ``library/<hex>``) and whose
container already runs keeps its container across a kukeond restart, and says why.

The state an older node left is made here as it made it: the image recorded under the name
that node normalised the cell's image to, the container created from that record, then the
cell's stored image given as the user wrote it, while kukeond is down.
"""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Cell, Kind
from kukeon.daemon.app import Daemon
from kukeon.runtime.containerd.tasks import TaskStatus
from tests.fixtures.kukeond import Kukeond

from .conftest import speed_up
from .helpers import cell_doc, cell_key, container, get_cell, update_cell

pytestmark = pytest.mark.integration

IMAGE_ID = "0123456789abcdef" * 4
RECORDED = f"docker.io/library/{IMAGE_ID}:latest"
"""What a node before a1694b5 made of ``IMAGE_ID`` (and recorded a pull under)."""


async def test_running_cell_keeps_running_when_its_image_no_longer_parses(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.containerd.images(k.namespace).import_archive(k.image.archive, name=RECORDED)
    doc = cell_doc(k, "legacy", [{**container(k, "main"), "image": RECORDED}])
    await k.apply(doc)
    await k.wait_for(Kind.CELL, cell_key(k, "legacy"), state="Ready")
    cid = "s1_st1_legacy_main"
    before = await k.containerd.tasks(k.namespace).get(cid)
    assert before.status == TaskStatus.RUNNING

    # kukeond goes down; the cell is as an older API server stored it (it is not a model
    # rule, so the store takes it); the upgraded kukeond comes up.
    await k.daemon.stop()
    cell = await get_cell(k, cell_key(k, "legacy"))
    image_as_written = [c.model_copy(update={"image": IMAGE_ID}) for c in cell.spec.containers]
    await update_cell(k, cell_key(k, "legacy"), spec={"containers": image_as_written})
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry
    speed_up(k)

    def passed(found: object) -> bool:
        return isinstance(found, Cell) and found.status.observed_generation == (
            found.metadata.generation
        )

    await k.wait_for(Kind.CELL, cell_key(k, "legacy"), until=passed)
    await asyncio.sleep(2)  # later passes change nothing either
    after = await k.containerd.tasks(k.namespace).get(cid)
    assert after.status == TaskStatus.RUNNING
    assert after.pid == before.pid
    assert (await k.containerd.containers(k.namespace).get(cid)).image == RECORDED
    last = await get_cell(k, cell_key(k, "legacy"))
    assert str(last.status.state) == "Ready", last.status
    assert k.daemon.events is not None
    said = [
        e.message
        for e in (await k.daemon.events.list(k.realm)).items
        if e.involved_object.path.endswith("/legacy") and e.type == "Warning"
    ]
    assert any(
        "InvalidImageReference" in m and IMAGE_ID in m and f"({RECORDED})" in m for m in said
    ), said
