"""The retry schedule: 0.5 s doubling, capped at 5 minutes, jittered within bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kukeon.framework import Settings, TemporaryError, base_delay, retry_delay

DEFAULTS = Settings(node_name="n")


def test_the_default_schedule_doubles_from_half_a_second_to_five_minutes() -> None:
    delays = [base_delay(attempt, settings=DEFAULTS) for attempt in range(1, 14)]
    assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert delays[-1] == 300.0
    assert max(delays) == 300.0
    assert base_delay(10_000, settings=DEFAULTS) == 300.0


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        base_delay(0, settings=DEFAULTS)


@given(attempt=st.integers(min_value=1, max_value=200), draw=st.floats(0.0, 1.0))
def test_jitter_stays_within_its_band_and_under_the_cap(attempt: int, draw: float) -> None:
    base = base_delay(attempt, settings=DEFAULTS)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * draw

    delay = retry_delay(attempt, settings=DEFAULTS, uniform=uniform)
    assert base * 0.9 - 1e-9 <= delay <= min(base * 1.1, 300.0) + 1e-9


def test_jitter_spreads_retries() -> None:
    delays = {retry_delay(3, settings=DEFAULTS) for _ in range(50)}
    assert len(delays) > 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_workers", 0),
        ("backoff_initial", 0.0),
        ("backoff_factor", 0.5),
        ("backoff_max", 0.1),
        ("backoff_jitter", 1.0),
        ("lease_ttl", 0),
        ("node_name", ""),
    ],
)
def test_settings_refuse_nonsense(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_lease_intervals_derive_from_the_ttl() -> None:
    settings = Settings(node_name="n", lease_ttl=15)
    assert settings.refresh_interval == 5.0
    assert settings.poll_interval == 1.0
    assert Settings(node_name="n", lease_ttl=2).poll_interval == 0.5


def test_a_temporary_error_refuses_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="delay"):
        TemporaryError("x", delay=-1)
    assert TemporaryError("x").reason == "TemporaryFailure"
    assert TemporaryError("x", reason="Busy", delay=2).delay == 2
