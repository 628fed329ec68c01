"""A bad image reference fails the cell with a message naming it; fixing the spec recovers."""

from __future__ import annotations

import pytest

from kukeon.api import Cell, Kind
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
