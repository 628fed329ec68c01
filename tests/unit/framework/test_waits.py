"""wait_event: a bounded wait on an event that never loses a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.framework.waits import wait_event


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


async def test_a_cancellation_arriving_with_the_event_ends_a_loop_around_it() -> None:
    # asyncio.wait_for on Python 3.11 returns the result here and the loop goes on forever.
    event = asyncio.Event()
    rounds = 0

    async def loop_forever() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            event.clear()
            await wait_event(event, 10)

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0.01)
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await task
    assert rounds == 1
