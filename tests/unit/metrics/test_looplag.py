"""The event-loop lag monitor sees a blocking call, and names its cost in /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from prometheus_client import CollectorRegistry

from kukeon.metrics.looplag import LAG_BUDGET_SECONDS, LoopLagMonitor


async def test_a_blocking_call_shows_as_lag() -> None:
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(registry, interval=0.01)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0.05)  # a few quiet rounds first
        time.sleep(0.2)  # noqa: ASYNC251 (the point: hold the loop)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # The block started while the timer was pending, so at least most of it shows.
    assert monitor.max_lag >= 0.15
    assert registry.get_sample_value("kukeon_event_loop_lag_max_seconds") == monitor.max_lag
    count = registry.get_sample_value("kukeon_event_loop_lag_seconds_count")
    assert count is not None
    assert count >= 3
    over_budget = registry.get_sample_value(
        "kukeon_event_loop_lag_seconds_bucket", {"le": str(LAG_BUDGET_SECONDS)}
    )
    assert over_budget is not None
    assert over_budget < count


def test_a_long_block_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopLagMonitor(CollectorRegistry(), warn_after=0.25)
    with caplog.at_level(logging.WARNING, logger="kukeon.metrics.looplag"):
        monitor.observe(0.1)
        assert not caplog.records
        monitor.observe(0.3)
    assert "blocked for 300 ms" in caplog.text
    assert monitor.max_lag == 0.3


async def test_debug_mode_reports_callbacks_over_the_budget() -> None:
    loop = asyncio.get_running_loop()
    previous_debug, previous_duration = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    task = asyncio.create_task(LoopLagMonitor(CollectorRegistry()).run())
    try:
        await asyncio.sleep(0)
        assert loop.slow_callback_duration == LAG_BUDGET_SECONDS
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        loop.set_debug(previous_debug)
        loop.slow_callback_duration = previous_duration


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        LoopLagMonitor(CollectorRegistry(), interval=0)
