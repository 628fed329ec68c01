"""kukeond's periodic full collection frees the cycles that reached the oldest generation."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref

from kukeon.daemon import gcpolicy


class Cycle:
    def __init__(self) -> None:
        self.me = self


def old_garbage() -> weakref.ref[Cycle]:
    """A cycle promoted to the oldest generation while in use, then dropped."""
    cycle = Cycle()
    gc.collect(1)  # it survives the young and middle collections: now in the oldest
    return weakref.ref(cycle)


async def test_a_cycle_in_the_oldest_generation_waits_for_a_full_collection(
    no_automatic_collections: None,
) -> None:
    garbage = old_garbage()
    gc.collect(1)
    await asyncio.sleep(0.05)
    assert garbage() is not None  # young and middle collections never free it
    gc.collect()
    assert garbage() is None


async def test_the_periodic_full_collection_frees_it(no_automatic_collections: None) -> None:
    garbage = old_garbage()
    collecting = asyncio.create_task(gcpolicy.collect_fully_every(0.01))
    try:
        for _ in range(200):
            if garbage() is None:
                break
            await asyncio.sleep(0.01)
        assert garbage() is None
        assert not collecting.done()  # it goes on
    finally:
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting


def test_the_period_is_minutes() -> None:
    assert 60 <= gcpolicy.FULL_COLLECTION_SECONDS <= 600
