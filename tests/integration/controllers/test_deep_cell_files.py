"""A cell whose container nested a deep tree in its tty state directory is deleted all the
same, its files with it.

`/run/kukeon/tty` is a directory of the host's (``<state>/cells/.../tty/<container>/run``)
that an attachable container with ``tty.onInit`` writes as it likes. A tree of 1,500
directories there made the cell's finalizer fail at every retry (``shutil.rmtree``
recursed past Python's stack: "finalize of Cell ... raised RecursionError"), so the cell,
and with it its stack, space and realm, stayed ``Deleting`` for good (seen on the
quickstart kukeond)."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

LEVELS = 1500
NEST = (
    "cd /run/kukeon/tty && mkdir -p $(for i in $(seq {levels}); do printf 'a/'; done) "
    "&& touch nested; exec sleep 1000"
)


async def test_a_cell_whose_tty_state_nests_deep_is_deleted_with_its_files(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    box = container(
        k,
        "app",
        script=NEST.format(levels=LEVELS),
        attachable=True,
        tty={"onInit": [{"script": "true"}]},
    )
    await k.apply(cell_doc(k, "deep", [box], terminationGracePeriodSeconds=1))
    ready = await k.wait_for(Kind.CELL, cell_key(k, "deep"), state="Ready")
    assert isinstance(ready, Cell)
    files = k.config.state_dir.joinpath("cells", *cell_key(k, "deep"))
    state = files / "tty" / "app" / "run"
    async with asyncio.timeout(30):
        while not (state / "nested").exists():  # noqa: ASYNC110 - the container's own pace
            await asyncio.sleep(0.1)

    await k.registry.delete(Kind.CELL, cell_key(k, "deep"))
    await k.wait_gone(Kind.CELL, cell_key(k, "deep"), within=60)
    assert not files.exists()
