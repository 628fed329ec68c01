"""kukeond's young sweeps free a burst's cycles while it goes on, and leave idle alone."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kukeon.daemon import gcpolicy, mallocpolicy

PERIOD = 0.01


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of each collection that starts while the test runs."""
    started: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(record)
    try:
        yield started
    finally:
        gc.callbacks.remove(record)


@pytest.fixture
async def sweeping() -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(gcpolicy.sweep_young_every(PERIOD))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def burst(cycles: int) -> list[weakref.ref[Cycle]]:
    """Garbage as a cell start makes it: cycles, dropped at once, never collected by
    reference counting."""
    return [weakref.ref(Cycle()) for _ in range(cycles)]


async def wait_for(condition: Any, within: float = 2.0) -> None:
    for _ in range(int(within / PERIOD)):
        if condition():
            return
        await asyncio.sleep(PERIOD)
    raise AssertionError("not within the time allowed")


async def test_a_bursts_cycles_are_freed_while_it_goes_on(
    no_automatic_collections: None, sweeping: asyncio.Task[None]
) -> None:
    garbage = burst(gcpolicy.YOUNG_SWEEP_OBJECTS * 2)
    await wait_for(lambda: all(ref() is None for ref in garbage))
    assert not sweeping.done()  # it goes on


async def test_idle_has_no_collections(
    no_automatic_collections: None, collections: list[int], sweeping: asyncio.Task[None]
) -> None:
    await asyncio.sleep(PERIOD * 10)
    assert collections == []


async def test_a_middle_collection_when_young_ones_are_due(
    no_automatic_collections: None, collections: list[int], sweeping: asyncio.Task[None]
) -> None:
    """Cycles promoted by the sweeps' young collections are not left for the full one."""
    for _ in range(gcpolicy.MIDDLE_THRESHOLD + 2):
        burst(gcpolicy.YOUNG_SWEEP_OBJECTS)
        young = len(collections)
        await wait_for(lambda: len(collections) > young)  # noqa: B023 (awaited here)
    assert 0 in collections
    assert 1 in collections


async def test_glibc_gets_its_pages_back_once_a_burst_is_over(
    no_automatic_collections: None,
    sweeping: asyncio.Task[None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    trims: list[int] = []

    def trim() -> mallocpolicy.Trimmed:
        trims.append(1)
        return mallocpolicy.Trimmed(2048, 1024, 0.001)

    monkeypatch.setattr(mallocpolicy, "trim", trim)
    with caplog.at_level(logging.INFO, logger=gcpolicy.__name__):
        burst(gcpolicy.TRIM_AFTER_SWEPT * 2)
        await wait_for(lambda: trims)
        await asyncio.sleep(PERIOD * 10)
    assert trims == [1]  # once per burst, not on every quiet period after it
    assert "malloc_trim gave back 1.0 MiB" in caplog.text


async def test_a_small_burst_is_not_worth_a_trim(
    no_automatic_collections: None,
    sweeping: asyncio.Task[None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(mallocpolicy, "trim", lambda: trims.append(1))
    garbage = burst(gcpolicy.YOUNG_SWEEP_OBJECTS * 2)
    await wait_for(lambda: all(ref() is None for ref in garbage))
    await asyncio.sleep(PERIOD * 10)
    assert trims == []


def test_a_sweep_is_rare_and_cheap() -> None:
    """Twice a second at most, and only past a couple of thousand allocations: far more
    often than the young threshold a burst would wait for, far less than CPython's 700."""
    assert 0.1 <= gcpolicy.YOUNG_SWEEP_SECONDS <= 1.0
    assert 700 < gcpolicy.YOUNG_SWEEP_OBJECTS < gcpolicy.YOUNG_THRESHOLD // 10
