"""``kukeon_event_loop_lag_seconds``: how late kukeond's event loop wakes a timer.

Every controller, watch, probe and API request of kukeond shares one event loop; a
blocking call anywhere (file I/O, a long computation) delays all of them. A timer set for
``interval`` seconds that fires ``interval + lag`` seconds later measures that delay: a
block of B seconds shows as a lag of up to B. The histogram and the maximum since start
are on ``/metrics``; a lag over ``warn_after`` is logged.

To name the culprit, run kukeond with ``PYTHONASYNCIODEBUG=1``: asyncio then logs every
callback that ran longer than the loop's ``slow_callback_duration``, which the monitor sets
to the project's budget (``LAG_BUDGET_SECONDS``).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Gauge, Histogram

logger = logging.getLogger(__name__)

# The longest the loop may be held by one callback (issue 17's acceptance).
LAG_BUDGET_SECONDS = 0.05

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopLagMonitor:
    """Measures the event loop's timer lag, forever (run it as a supervised task)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        interval: float = 0.1,
        warn_after: float = 0.25,
    ) -> None:
        if interval <= 0:
            raise ValueError("LoopLagMonitor needs interval > 0")
        self.interval = interval
        self.warn_after = warn_after
        self.max_lag = 0.0
        self._histogram = Histogram(
            "kukeon_event_loop_lag_seconds",
            "How late the event loop ran a timer: time any callback held the loop.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._max = Gauge(
            "kukeon_event_loop_lag_max_seconds",
            "The longest event-loop lag seen since kukeond started.",
            registry=registry,
        )

    def observe(self, lag: float) -> None:
        self._histogram.observe(lag)
        if lag > self.max_lag:
            self.max_lag = lag
            self._max.set(lag)
        if lag >= self.warn_after:
            logger.warning(
                "the event loop was blocked for %.0f ms (run with PYTHONASYNCIODEBUG=1 "
                "to name the callback)",
                lag * 1000,
            )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.get_debug():
            loop.slow_callback_duration = LAG_BUDGET_SECONDS
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            self.observe(max(0.0, loop.time() - started - self.interval))
