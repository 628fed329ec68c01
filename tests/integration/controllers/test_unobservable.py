"""A cell whose host cannot be observed (containerd unreachable) is Unknown, then recovers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers import ImageProvider
from kukeon.controllers.cell import CONTAINERD_PATIENCE_SECONDS
from kukeon.runtime.containerd import ContainerdClient
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration


async def test_unreachable_containerd_gives_unknown_then_ready(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    controllers = k.daemon.controllers
    assert controllers is not None
    cells = controllers.cells
    real_host, real_images = cells.host, cells.images
    # The client's own patience (30 s by default, as kukeond's): a cell's pass gives up
    # after CONTAINERD_PATIENCE_SECONDS all the same, so the cell says why within seconds.
    unreachable = ContainerdClient(str(tmp_path / "no-containerd.sock"))
    try:
        cells.host = dataclasses.replace(real_host, containerd=unreachable)
        cells.images = ImageProvider(containerd=unreachable, archives=real_images.archives)
        await k.apply(cell_doc(k, "blind", [container(k, "a")]))
        unknown = await k.wait_for(
            Kind.CELL, cell_key(k, "blind"), state="Unknown", within=CONTAINERD_PATIENCE_SECONDS + 8
        )
        assert isinstance(unknown, Cell)
        assert unknown.status.reason == "HostUnobservable"
        assert "unavailable" in (unknown.status.message or "")
    finally:
        cells.host, cells.images = real_host, real_images
        await unreachable.close()
    # The retry (with backoff) sees the real containerd again.
    await k.wait_for(Kind.CELL, cell_key(k, "blind"), state="Ready", within=30)
