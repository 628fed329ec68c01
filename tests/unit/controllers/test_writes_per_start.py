"""How many status writes a cell's start makes: one when it is Ready, plus one for each
real intermediate state (a pull that takes time says so); a pass with nothing new writes
nothing."""

from __future__ import annotations

from typing import Any, cast

from kukeon.framework import HandlerContext

from .test_cell_controller import Rig, app, make_cell
from .test_cell_controller import rig as rig


async def _writes_of_one_pass(rig: Rig, cell: Any) -> list[dict[str, Any]]:
    rig.ctx.writes.clear()
    await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
    return list(rig.ctx.writes)


async def test_a_one_container_cell_is_written_once_when_ready(rig: Rig) -> None:
    writes = await _writes_of_one_pass(rig, make_cell(app()))
    assert [str(write.get("state")) for write in writes] == ["Ready"]
    ready = rig.latest(make_cell(app()))
    assert await _writes_of_one_pass(rig, ready) == []


async def test_a_pull_is_the_one_intermediate_write(rig: Rig) -> None:
    rig.images.pull = True
    writes = await _writes_of_one_pass(rig, make_cell(app()))
    assert [(str(w.get("state")), w.get("reason")) for w in writes] == [
        ("None", "Pulling"),
        ("Ready", None),
    ]
