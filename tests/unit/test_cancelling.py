"""cancel_and_wait and wait_ended: children always waited for, our own cancel kept."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.cancelling import cancel_and_wait, wait_ended


async def test_cancel_and_wait_waits_for_the_children_and_keeps_our_cancellation() -> None:
    # A parent cancelled while it waits for a cancelled child to end must end too (with
    # suppress(CancelledError) around that await it went on: an election led again
    # after run() was cancelled), and only once the child has ended.
    child_ended, waiting, went_on = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def child() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.1)  # slow to end
            child_ended.set()

    async def parent() -> None:
        task = asyncio.ensure_future(child())
        await asyncio.sleep(0)
        waiting.set()
        await cancel_and_wait(task)
        went_on.set()

    running = asyncio.ensure_future(parent())
    await waiting.wait()
    await asyncio.sleep(0.02)  # inside cancel_and_wait, the child still ending
    running.cancel()
    await asyncio.wait([running], timeout=2)
    assert running.cancelled()
    assert child_ended.is_set()
    assert not went_on.is_set()


async def test_a_timeout_around_the_caller_still_fires() -> None:
    # asyncio.timeout counts on its CancelledError coming through: a timeout that expires
    # while the caller waits for a child slow to end must not become a silent return.
    went_on = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.2)

    async def caller() -> None:
        task = asyncio.ensure_future(slow_to_end())
        await asyncio.sleep(0)
        await cancel_and_wait(task)  # the timeout expires in here
        went_on.set()

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await caller()
    assert not went_on.is_set()


async def test_what_a_cancelled_child_raised_stays_with_it() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise OSError("closing failed")

    task = asyncio.ensure_future(fails_on_cancel())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.done()
    assert isinstance(task.exception(), OSError)


async def test_wait_ended_does_not_cancel() -> None:
    release = asyncio.Event()

    async def child() -> str:
        await release.wait()
        return "done"

    task = asyncio.ensure_future(child())
    waiter = asyncio.ensure_future(wait_ended(task))
    await asyncio.sleep(0.02)
    assert not task.done()
    assert not waiter.done()
    release.set()
    await waiter
    assert task.result() == "done"


async def test_done_and_no_tasks_return_at_once() -> None:
    await cancel_and_wait()
    finished = asyncio.ensure_future(asyncio.sleep(0))
    await finished
    await cancel_and_wait(finished)
    assert not finished.cancelled()
