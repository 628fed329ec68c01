"""A cell whose binding the store refuses (its document would be over the limit with
`nodeName`, the annotation and the finalizer) is said once, in its status, and not tried
again until it changes: the refusal ended every pass (each second, a warning) before the
release of lost nodes, and was tried again at each."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kukeon.api import Cell, CellState
from kukeon.controllers.bindrefusals import BINDING_REFUSED
from kukeon.store import DocumentTooLarge

from .hostfakes import cell
from .test_scheduling_pass import Clock, Fleet, add_node, fleet, get_cell, scheduler

__all__ = ["fleet"]  # the fixture, used by name

TOO_LARGE = "Cell 'r/s/st/fat': the document is 1048637 bytes, over the 1048576-byte limit"


class RefusingFleet(Fleet):
    """Refuses every spec write of the cell ``fat`` as too large."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    async def update(self, obj: Any, *, placement: bool = False) -> Any:
        if obj.metadata.name == "fat":
            self.tries += 1
            raise DocumentTooLarge(TOO_LARGE)
        return await super().update(obj, placement=placement)


@pytest.fixture
def refusing(fleet: Fleet) -> RefusingFleet:
    store = RefusingFleet()
    store.alive = fleet.alive  # the patched alive_nodes reads the fleet fixture's set
    return store


async def test_a_refused_binding_is_said_once_and_waits_for_a_change(
    fleet: Fleet, refusing: RefusingFleet, caplog: pytest.LogCaptureFixture
) -> None:
    await add_node(refusing, "a")
    await refusing.create(cell("fat", node=None))
    await refusing.create(cell("thin", node=None))
    pass_ = scheduler(refusing, Clock())
    with caplog.at_level(logging.DEBUG, logger="kukeon.controllers"):
        for _ in range(3):
            await pass_.run_pass()
    assert (await get_cell(refusing, "thin")).spec.node_name == "a"
    fat = await get_cell(refusing, "fat")
    assert isinstance(fat, Cell)
    assert fat.spec.node_name is None
    assert (fat.status.state, fat.status.reason) == (CellState.PENDING, BINDING_REFUSED)
    assert "1048637 bytes" in (fat.status.message or "")
    assert refusing.tries == 1  # not again while the cell is unchanged
    said = [r for r in caplog.records if "refused its binding" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING]
    # A change of the cell: tried again (and refused again: said at debug level).
    await refusing.update_status(fat.model_copy(update={"status": fat.status}))
    await pass_.run_pass()
    assert refusing.tries == 2
