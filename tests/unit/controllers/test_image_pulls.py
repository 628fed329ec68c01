"""The cells' pulls beside their passes (``controllers/imagepulls.py``): one pull per
namespace and image, joined by every cell that wants it; each waiter woken at its end and
told its outcome once; a pull no cell waits for is cancelled, and kukeond's stop cancels
every pull."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.controllers.imagepulls import BackgroundPulls

KEY = ("ns", "docker.io/library/busybox:latest")
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
    pulls.leave(A)  # deleted: B still waits
    await asyncio.sleep(0)
    assert pulls.under_way() == 1
    assert pull.cancelled == 0
    other = ("ns", "docker.io/library/alpine:latest")
    assert pulls.ask(other, B, Pull()) is True  # B's spec now names another image
    await asyncio.sleep(0)
    assert pull.cancelled == 1
    pulls.leave(B)
    await asyncio.sleep(0)
    assert pulls.under_way() == 0
    assert woken == []
    assert not pulls.pulled(KEY, B)


async def test_kukeonds_stop_cancels_every_pull_and_starts_none() -> None:
    pulls, woken = pulls_woken()
    pull = Pull()
    pulls.ask(KEY, A, pull)
    await asyncio.sleep(0)
    await pulls.close()
    assert pull.cancelled == 1
    assert pulls.under_way() == 0
    assert pulls.ask(KEY, A, pull) is True
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
    pulls.leave(A)
    assert not pulls.pulled(KEY, A)
    assert pulls.pulled(KEY, B) is (waiters == 2)
