"""The backoff on replacing a set's cells that end after they were Ready."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kukeon.api import CellState
from kukeon.controllers.cellsetbackoff import BackoffPolicy, ReplaceBackoff
from kukeon.controllers.cellsetplan import Member
from tests.unit.controllers.test_cellset_progress import FakeRegistry, a_set, controller_on

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = BackoffPolicy(initial=2.0, cap=8.0, reset_after=10.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_first_replacement_is_at_once_then_they_double_up_to_the_cap() -> None:
    ticks = [0.0]
    backoff = ReplaceBackoff(POLICY, lambda: ticks[0])
    backoff.failed(1, [])
    assert backoff.holding() == 0
    waits = []
    for n in range(5):
        ticks[0] = n * 100
        backoff.failed(1, [])
        waits.append(backoff.holding())
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]
    ticks[0] = 400 + 3
    assert backoff.holding() == 5.0


def member(name: str, ready_since: float | None, *, failed: bool = False) -> Member:
    return Member(
        name=name,
        template_hash="h",
        created=T0,
        ready=ready_since is not None and not failed,
        ready_since=at(ready_since) if ready_since is not None else None,
        failed=failed,
    )


def test_a_cell_made_since_that_stays_ready_resets_it() -> None:
    ticks = [0.0]
    backoff = ReplaceBackoff(POLICY, lambda: ticks[0])
    before = member("before", -40)
    backoff.failed(1, [before])
    ticks[0] = 1
    backoff.failed(1, [before])
    ticks[0] = 5
    backoff.settle([member("new", 5), before], 0)  # first seen Ready
    # Ready for 9 s only, or made before the last failure: not yet.
    ticks[0] = 14
    backoff.settle([member("new", 5), before], 0)
    assert backoff.failures == 2
    # minReadySeconds longer than reset_after counts.
    ticks[0] = 30
    backoff.settle([member("new", 5)], 30)
    assert backoff.failures == 2
    backoff.settle([member("new", 5)], 0)
    assert (backoff.failures, backoff.holding()) == (0, 0)


async def test_a_set_whose_cells_keep_ending_backs_off() -> None:
    now = [T0]
    registry = FakeRegistry(a_set("1"))
    controller = controller_on(registry, now, backoff_policy=POLICY)

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
