"""An image import wakes the cells of the node that wait for that image at once, not after
their retry's back-off (issue: `kukectl image import` left a cell `ImageUnavailable`
until its next retry, minutes later once the back-off has grown)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.containerd import MAKE_TEST_IMAGE
from tests.fixtures.kukeond import Kukeond

from .test_image_routes import API, cell_document, session

# A retry 60 s after the first failure: only a wake-up brings the cell up within the test.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(retry_backoff_initial_seconds=60.0),
]

LATE_NAME = "kukeon.io/test/late:1"


@pytest.fixture
def late_image(tmp_path: Path) -> Path:
    """The busybox test image under a name no cell finds before it is imported."""
    archive = tmp_path / "late.tar"
    subprocess.run([str(MAKE_TEST_IMAGE), str(archive), LATE_NAME], check=True, capture_output=True)
    return archive


async def test_an_import_wakes_the_cells_waiting_for_its_image(
    kukeond: Kukeond, late_image: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    archive = late_image
    key = (k.realm, "s1", "st1", "late")
    await k.apply(cell_document(k, "late", LATE_NAME))
    failed = await k.wait_for(Kind.CELL, key, state="Failed", within=30)
    assert failed.status.reason == "ImageUnavailable"
    await asyncio.sleep(1)  # its pass is over: the retry is a minute away

    async with session(k) as http:
        url = f"{API}/realms/{k.realm}/images"
        async with http.post(url, data=archive.read_bytes()) as response:
            assert response.status == 201, await response.text()
    started = asyncio.get_running_loop().time()
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=20)
    assert isinstance(ready, Cell)
    assert ready.status.containers[0].image == LATE_NAME
    assert asyncio.get_running_loop().time() - started < 10
