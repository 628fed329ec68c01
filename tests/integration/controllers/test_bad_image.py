"""A bad image reference fails the cell with a message naming it; fixing the spec recovers."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Cell, EventReason, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, get_cell, update_cell

pytestmark = pytest.mark.integration

BAD_IMAGE = "127.0.0.1:1/kukeon-test/no-such-image:v1"


async def test_bad_image_fails_then_recovers(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "img")
    await k.apply(
        cell_doc(k, "img", [{"id": "app", "image": BAD_IMAGE, "command": "sleep", "args": ["60"]}])
    )
    failed = await k.wait_for(Kind.CELL, key, state="Failed", within=30)
    assert isinstance(failed, Cell)
    assert failed.status.reason == "ImageUnavailable"
    assert BAD_IMAGE in (failed.status.message or "")

    cell = await get_cell(k, key)
    fixed = [c.model_copy(update={"image": k.image.name}) for c in cell.spec.containers]
    await update_cell(k, key, spec={"containers": fixed})
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=30)
    assert isinstance(ready, Cell)
    assert ready.status.reason is None
    assert ready.status.message is None
    assert ready.status.observed_generation == ready.metadata.generation


async def test_a_pull_that_keeps_failing_backs_off(kukeond: Kukeond) -> None:
    """A registry that refuses at once is asked again after a growing back-off (0.5 s
    doubling, the failure backoff), as kubelet's ImagePullBackOff, not twice a second for
    ever: each pull's pass (a requeue) reset the count the failure after it backed off by.
    8 s after the first failure: pulls at about 0, 0.5, 1.5, 3.5 and 7.5 s (17 before)."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "far")
    await k.apply(cell_doc(k, "far", [{"id": "app", "image": BAD_IMAGE}]))
    await k.wait_for(Kind.CELL, key, state="Failed", within=30)
    await asyncio.sleep(8)
    assert k.daemon.events is not None
    events = (await k.daemon.events.list(k.realm)).items
    pulls = sum(
        event.count
        for event in events
        if event.involved_object.name == "far" and event.reason == EventReason.PULLING
    )
    assert 2 <= pulls <= 6, f"{pulls} pulls in 8 s"


async def test_an_update_to_a_bad_image_keeps_the_old_container_and_says_so(
    kukeond: Kukeond,
) -> None:
    """The old container runs on while its new image cannot be had: Degraded with reason
    ImagePullBackOff (it showed Failed beside READY 1/1), the container Running and ready,
    its reason and the image it still runs said; reverting the spec clears it."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "upd")
    await k.apply(
        cell_doc(
            k, "upd", [{"id": "app", "image": k.image.name, "command": "sleep", "args": ["60"]}]
        )
    )
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=30)
    assert isinstance(ready, Cell)
    pid = ready.status.containers[0].pid

    cell = await get_cell(k, key)
    bad = [c.model_copy(update={"image": BAD_IMAGE}) for c in cell.spec.containers]
    await update_cell(k, key, spec={"containers": bad})
    held = await k.wait_for(
        Kind.CELL, key, until=lambda c: c.status.reason == "ImagePullBackOff", within=30
    )
    assert isinstance(held, Cell)
    assert str(held.status.state) == "Degraded"
    assert f"keeps running image {k.image.name!r}" in (held.status.message or "")
    app = held.status.containers[0]
    assert (str(app.state), app.ready, app.pid, app.image) == ("Running", True, pid, k.image.name)
    assert app.reason == "ImagePullBackOff"
    assert BAD_IMAGE in (app.message or "")

    await update_cell(k, key, spec={"containers": cell.spec.containers})
    back = await k.wait_for(
        Kind.CELL,
        key,
        until=lambda c: str(c.status.state) == "Ready" and c.status.reason is None,
        within=30,
    )
    assert isinstance(back, Cell)
    assert back.status.containers[0].pid == pid  # the same container: nothing was replaced
    assert back.status.containers[0].reason is None
