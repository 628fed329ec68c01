"""The cells' pulls beside their passes (``controllers/imagepulls.py``): one pull per
namespace and image, joined by every cell that wants it; each waiter woken at its end and
told its outcome once; a pull no cell waits for is cancelled (each version of a cell says
which images it still needs: none once stopped, deleted or moved), and kukeond's stop
cancels every pull."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from kukeon.controllers.imagepulls import BackgroundPulls, pulls_needed
from tests.unit.api.samples import container
from tests.unit.controllers.hostfakes import cell

KEY = ("ns", "docker.io/library/busybox:latest")
OTHER = ("ns", "docker.io/library/alpine:latest")
A, B = ("r", "s", "st", "a"), ("r", "s", "st", "b")


class Pull:
    """A pull that ends when told (`done`), failing with `error` if set; counts runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.cancelled = 0
        self.done = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self) -> None:
        self.runs += 1
        try:
            await self.done.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error


def pulls_woken() -> tuple[BackgroundPulls, list[tuple[str, ...]]]:
    pulls = BackgroundPulls()
    woken: list[tuple[str, ...]] = []
    pulls.wake = woken.append
    return pulls, woken


async def ended(woken: list[tuple[str, ...]], count: int) -> None:
    """The pull ended and woke its `count` waiters (each one's wake is its last step)."""
    for _step in range(100):
        if len(woken) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"woken: {woken}")


async def test_cells_wanting_one_image_share_its_pull_and_each_is_told_once() -> None:
    pulls, woken = pulls_woken()
    pull = Pull()
    assert pulls.ask(KEY, A, pull) is True
    assert pulls.ask(KEY, B, pull) is True
    assert pulls.ask(KEY, A, pull) is True  # a pass again meanwhile: the same pull
    await asyncio.sleep(0)
    assert pull.runs == 1
    pull.done.set()
    await ended(woken, 2)
    assert sorted(woken) == [A, B]
    assert pulls.pulled(KEY, A)
    assert pulls.pulled(KEY, B)
    assert not pulls.pulled(KEY, A)


async def test_a_failure_is_told_to_each_waiter_once_then_the_pull_starts_again() -> None:
    pulls, woken = pulls_woken()
    pull = Pull()
    pull.error = OSError("connection refused")
    pulls.ask(KEY, A, pull)
    pulls.ask(KEY, B, pull)
    pull.done.set()
    await ended(woken, 2)
    assert sorted(woken) == [A, B]
    assert pulls.ask(KEY, A, pull) is pull.error
    assert pulls.ask(KEY, B, pull) is pull.error
    assert not pulls.pulled(KEY, A)
    assert pulls.ask(KEY, A, pull) is True  # the retry after the back-off
    await ended(woken, 3)
    assert pull.runs == 2


async def test_a_pull_no_cell_waits_for_is_cancelled() -> None:
    pulls, woken = pulls_woken()
    pull = Pull()
    pulls.ask(KEY, A, pull)
    pulls.ask(KEY, B, pull)
    await asyncio.sleep(0)
    pulls.need(A, None)  # deleted: B still waits
    await asyncio.sleep(0)
    assert pulls.under_way() == 1
    assert pull.cancelled == 0
    pulls.need(B, frozenset({OTHER[1]}))  # B's spec now names another image
    await asyncio.sleep(0)
    assert pull.cancelled == 1
    assert pulls.under_way() == 0
    assert woken == []
    assert not pulls.pulled(KEY, B)


@pytest.mark.parametrize("why", ["stopped", "moved"])
async def test_a_cell_that_needs_the_image_no_more_leaves_its_pull_and_joins_again(
    why: str,
) -> None:
    """Stopped or no longer on this node, a cell needs no image: its pull, which no other
    cell waits for, is cancelled (before, it ran to its end); back, it pulls again."""
    pulls, woken = pulls_woken()
    pull = Pull()
    pulls.need(A, frozenset({KEY[1]}))
    pulls.ask(KEY, A, pull)
    await asyncio.sleep(0)
    pulls.need(A, frozenset())
    await asyncio.sleep(0)
    assert (pull.cancelled, pulls.under_way()) == (1, 0)
    pulls.need(A, frozenset({KEY[1]}))  # Running again, or back on this node
    assert pulls.ask(KEY, A, pull) is True
    await asyncio.sleep(0)
    assert (pull.runs, pulls.under_way()) == (2, 1)
    pull.done.set()
    await ended(woken, 1)
    assert pulls.pulled(KEY, A)


async def test_a_container_removed_from_the_spec_leaves_its_images_pull() -> None:
    """A cell of two containers on two images: the one removed leaves its pull, the one
    kept keeps its own (and the other cell waiting for the removed one's keeps that)."""
    pulls, _woken = pulls_woken()
    first, second = Pull(), Pull()
    pulls.need(A, frozenset({KEY[1], OTHER[1]}))
    pulls.ask(KEY, A, first)
    pulls.ask(OTHER, A, second)
    await asyncio.sleep(0)
    pulls.need(A, frozenset({OTHER[1]}))
    await asyncio.sleep(0)
    assert (first.cancelled, second.cancelled, pulls.under_way()) == (1, 0, 1)
    pulls.ask(KEY, B, first)
    pulls.need(A, frozenset({KEY[1], OTHER[1]}))
    pulls.ask(KEY, A, first)  # joins B's
    await asyncio.sleep(0)
    pulls.need(B, None)
    await asyncio.sleep(0)
    assert (first.runs, first.cancelled, pulls.under_way()) == (2, 1, 2)


async def test_a_pass_of_a_replaced_version_joins_no_pull() -> None:
    """A pass under way when the cell was stopped (or moved) asks for its image after the
    change was seen: it starts nothing, and the cell is told nothing of it (False: the
    pass says nothing either)."""
    pulls, woken = pulls_woken()
    pull = Pull()
    pulls.need(A, frozenset())
    assert pulls.ask(KEY, A, pull) is False
    await asyncio.sleep(0)
    assert (pull.runs, pulls.under_way()) == (0, 0)
    pulls.need(A, None)  # deleted: a cell of that name made again is judged afresh
    pulls.ask(KEY, A, pull)
    await asyncio.sleep(0)
    assert pull.runs == 1
    assert woken == []


async def test_an_outcome_is_forgotten_when_its_image_is_needed_no_more() -> None:
    pulls, woken = pulls_woken()
    pull = Pull()
    pull.error = OSError("connection refused")
    pulls.need(A, frozenset({KEY[1]}))
    pulls.ask(KEY, A, pull)
    pull.done.set()
    await ended(woken, 1)
    pulls.need(A, frozenset({KEY[1]}))  # a label changed: the failure is still to tell
    pulls.need(A, frozenset())  # stopped: not told once it runs again
    pulls.need(A, frozenset({KEY[1]}))
    assert pulls.ask(KEY, A, pull) is True
    await asyncio.sleep(0)
    assert pull.runs == 2


async def test_kukeonds_stop_cancels_every_pull_and_starts_none() -> None:
    pulls, woken = pulls_woken()
    pull = Pull()
    pulls.ask(KEY, A, pull)
    await asyncio.sleep(0)
    await pulls.close()
    assert pull.cancelled == 1
    assert pulls.under_way() == 0
    assert pulls.ask(KEY, A, pull) is False
    await asyncio.sleep(0)
    assert pull.runs == 1
    assert woken == []


@pytest.mark.parametrize("waiters", [1, 2])
async def test_a_waiter_that_left_is_told_nothing(waiters: int) -> None:
    pulls, woken = pulls_woken()
    pull = Pull()
    for waiter in (A, B)[:waiters]:
        pulls.ask(KEY, waiter, pull)
    pull.done.set()
    await ended(woken, waiters)
    pulls.need(A, None)
    assert not pulls.pulled(KEY, A)
    assert pulls.pulled(KEY, B) is (waiters == 2)


def test_a_cells_version_needs_its_containers_images_while_it_runs_here() -> None:
    two = [container("a", image="busybox"), container("b", image="alpine")]
    running = cell("c", containers=two)
    assert pulls_needed(running, here=True) == {KEY[1], OTHER[1]}
    assert pulls_needed(running, here=False) == frozenset()  # moved, unscheduled
    stopped = cell("c", containers=two, desiredState="Stopped")
    assert pulls_needed(stopped, here=True) == frozenset()
    deleting = running.model_copy(deep=True)
    deleting.metadata.deletion_timestamp = datetime.now(UTC)
    assert pulls_needed(deleting, here=True) == frozenset()
