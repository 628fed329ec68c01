"""The leader loop shared by the scheduler and the set controller (controllers.leading)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from kukeon.api import Kind
from kukeon.controllers.leading import LeaderLoop, Watch
from kukeon.store import Registry, StoreError, WatchEvent


class FeedRegistry:
    """A watch fed by the test: each item is an event or a StoreError to raise."""

    def __init__(self) -> None:
        self.feed: asyncio.Queue[Any] = asyncio.Queue()
        self.watches = 0

    async def current_revision(self) -> int:
        return 1

    async def watch(self, kind: Kind, *, resource_version: int) -> AsyncIterator[Any]:
        self.watches += 1
        while True:
            item = await self.feed.get()
            if isinstance(item, StoreError):
                raise item
            yield item


def event(name: str) -> WatchEvent:
    return cast(WatchEvent, type("Event", (), {"type": "MODIFIED", "object": name})())


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_passes_come_at_once_on_wakes_and_at_the_interval() -> None:
    registry = FeedRegistry()
    loop = LeaderLoop(what="test pass", registry=cast(Registry, registry), interval=0.2)
    passes: list[bool] = []
    fail_next = [False]

    async def run_pass(woken: bool) -> None:
        passes.append(woken)
        if fail_next[0]:
            fail_next[0] = False
            raise StoreError("etcd away")

    watch = Watch("test-watch", Kind.CELL, lambda e: cast(object, e.object) == "wanted")
    lead = asyncio.create_task(loop.lead(run_pass, [watch]))
    await settle()
    assert passes == [True]  # the first pass at once, as woken (it does the whole work)
    await registry.feed.put(event("ignored"))
    await settle()
    assert passes == [True]
    await registry.feed.put(event("wanted"))
    await settle()
    assert passes == [True, True]
    await asyncio.sleep(0.25)
    assert passes == [True, True, False]  # the interval's pass
    fail_next[0] = True
    loop.wake()
    await settle()
    await asyncio.sleep(0.25)
    assert passes[-2:] == [True, True]  # after a failed pass, the next one is whole
    # A broken watch starts again after the interval and still wakes the loop.
    await registry.feed.put(StoreError("watch cut"))
    await asyncio.sleep(0.25)
    assert registry.watches == 2
    lead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lead
