"""The backoff of long-lived retry loops: doubles to its cap, resets, jitters only downward."""

from __future__ import annotations

import pytest

from kukeon.retrying import Backoff


def test_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.05, 0.3)
    assert [backoff.next() for _ in range(5)] == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3])
    backoff.reset()
    assert backoff.current == 0.05
    assert backoff.next() == 0.05


def test_an_initial_delay_above_the_cap_is_used_once() -> None:
    # A lease loop polls at its own interval first, then retries at most every TTL.
    backoff = Backoff(5.0, 1.0)
    assert [backoff.next() for _ in range(3)] == [5.0, 1.0, 1.0]


def test_jitter_only_shortens_a_wait() -> None:
    seen: list[tuple[float, float]] = []

    def lowest(low: float, high: float) -> float:
        seen.append((low, high))
        return low

    backoff = Backoff(1.0, 8.0, jitter=0.5, uniform=lowest)
    assert backoff.next() == 0.5
    assert backoff.current == 2.0  # the schedule itself is not jittered
    assert seen == [(0.5, 1.0)]


@pytest.mark.parametrize(
    ("initial", "maximum", "factor", "jitter"),
    [(0, 1, 2, 0), (1, 0, 2, 0), (1, 1, 0.5, 0), (1, 1, 2, 1.0), (1, 1, 2, -0.1)],
)
def test_nonsense_is_refused(initial: float, maximum: float, factor: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="Backoff needs"):
        Backoff(initial, maximum, factor=factor, jitter=jitter)


async def test_sleep_waits_the_delay() -> None:
    backoff = Backoff(0.01, 0.02)
    await backoff.sleep()
    assert backoff.current == 0.02
