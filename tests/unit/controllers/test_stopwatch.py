"""Counts on the monotonic clock from a key's first sight in its episode."""

from __future__ import annotations

from kukeon.controllers.stopwatch import Stopwatches


def test_a_count_runs_while_the_episode_lasts_and_restarts_with_a_new_one() -> None:
    ticks = [100.0]
    watches: Stopwatches[str] = Stopwatches(lambda: ticks[0])
    assert watches.elapsed("a", 1) == 0.0
    ticks[0] = 130
    assert watches.elapsed("a", 1) == 30.0
    assert watches.elapsed("a", 2) == 0.0  # a new episode
    assert watches.elapsed("b", 1) == 0.0
    ticks[0] = 140
    watches.retain({"a"})
    assert watches.elapsed("a", 2) == 10.0
    assert watches.elapsed("b", 1) == 0.0  # forgotten, counted afresh
    watches.forget("a")
    assert watches.elapsed("a", 2) == 0.0
    ticks[0] = 150
    watches.restart()  # a new term
    assert watches.observe({"a": 2, "b": 1}) == {"a": 0.0, "b": 0.0}
    ticks[0] = 155
    assert watches.observe({"b": 1}) == {"b": 5.0}
    assert watches.observe({"a": 2}) == {"a": 0.0}  # left out of the last: forgotten


def test_a_clock_that_goes_back_counts_no_negative_time() -> None:
    ticks = [10.0]
    watches: Stopwatches[str] = Stopwatches(lambda: ticks[0])
    watches.elapsed("a", None)
    ticks[0] = 5.0  # only a test's clock does this; time.monotonic never does
    assert watches.elapsed("a", None) == 0.0
