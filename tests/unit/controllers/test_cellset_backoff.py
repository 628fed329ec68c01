"""The backoff on replacing a set's cells that end after they were Ready."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from kukeon.api import CellState
from kukeon.controllers.cellsetbackoff import BackoffPolicy, ReplaceBackoff
from kukeon.controllers.cellsetplan import Member
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry
from tests.unit.controllers.test_cellset_progress import FakeRegistry, a_set

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = BackoffPolicy(initial=2.0, cap=8.0, reset_after=10.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_first_replacement_is_at_once_then_they_double_up_to_the_cap() -> None:
    backoff = ReplaceBackoff(POLICY)
    backoff.failed(1, T0)
    assert backoff.holding(T0) == 0
    waits = []
    for n in range(5):
        backoff.failed(1, at(n * 100))
        waits.append(backoff.holding(at(n * 100)))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.holding(at(400 + 3)) == 5.0


def member(created: float, ready_since: float | None, *, failed: bool = False) -> Member:
    return Member(
        name="m",
        template_hash="h",
        created=at(created),
        ready=ready_since is not None and not failed,
        ready_since=at(ready_since) if ready_since is not None else None,
        failed=failed,
    )


def test_a_cell_made_since_that_stays_ready_resets_it() -> None:
    backoff = ReplaceBackoff(POLICY)
    backoff.failed(1, T0)
    backoff.failed(1, at(1))
    # Ready for 9 s only, or made before the last failure: not yet.
    backoff.settle([member(2, 5), member(-50, -40)], 0, at(14))
    assert backoff.failures == 2
    # minReadySeconds longer than reset_after counts.
    backoff.settle([member(2, 5)], 30, at(30))
    assert backoff.failures == 2
    backoff.settle([member(2, 5)], 0, at(15))
    assert (backoff.failures, backoff.holding(at(15))) == (0, 0)


async def test_a_set_whose_cells_keep_ending_backs_off() -> None:
    now = [T0]
    registry = FakeRegistry(a_set("1"))
    controller = CellSetController(
        registry=cast(Registry, registry), clock=lambda: now[0], backoff_policy=POLICY
    )

    def end_all() -> None:
        for name, cell in registry.cells.items():
            status = cell.status.model_copy(update={"state": CellState.ERROR, "ready_at": now[0]})
            registry.cells[name] = cell.model_copy(update={"status": status})

    await controller.run_pass()
    assert len(registry.cells) == 2
    end_all()  # both end after they were Ready: two failures in one pass
    now[0] = at(1)
    await controller.run_pass()
    assert registry.cells == {}  # deleted at once, replacements held for 2 s
    now[0] = at(2)
    await controller.run_pass()
    assert registry.cells == {}
    now[0] = at(3.5)
    await controller.run_pass()
    assert len(registry.cells) == 2
