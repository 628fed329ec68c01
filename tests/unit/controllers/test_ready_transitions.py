"""A cell's ``status.readyAt`` is when it last became Ready (a Ready condition's
``lastTransitionTime``), not the first time ever: a set's ``minReadySeconds`` and its
scale-down ranking count from it. It was set once and never again, so a cell that left
Ready (a container restarted, a readiness probe failing) and came back was credited its
first Ready's age at once (``cellsetready.ReadyClocks``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kukeon.api import AnyResource, Cell, CellState
from kukeon.controllers import reporting
from tests.unit.controllers.hostfakes import cell


class _Context:
    node_name = "n1"

    async def patch_status(
        self, obj: AnyResource, /, *, observe: bool = True, **fields: Any
    ) -> AnyResource:
        return obj.model_copy(update={"status": obj.status.model_copy(update=fields)})


async def _report(obj: Cell, state: CellState, at: datetime, mp: pytest.MonkeyPatch) -> Cell:
    mp.setattr(reporting, "now", lambda: at)
    written = await reporting.report(_Context(), obj, state=state)  # type: ignore[arg-type]
    assert isinstance(written, Cell)
    return written


async def test_ready_at_moves_each_time_the_cell_becomes_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = [datetime(2026, 12, 7, 12, minute, tzinfo=UTC) for minute in range(4)]
    ready = await _report(cell(), CellState.READY, t[0], monkeypatch)
    assert ready.status.ready_at == t[0]
    still = await _report(ready, CellState.READY, t[1], monkeypatch)
    assert still.status.ready_at == t[0]  # still Ready: unchanged, nothing written for it
    left = await _report(still, CellState.DEGRADED, t[2], monkeypatch)
    assert left.status.ready_at == t[0]  # kept: it was Ready once (a set replaces it if it ends)
    back = await _report(left, CellState.READY, t[3], monkeypatch)
    assert back.status.ready_at == t[3]
