"""Retry delays: exponential, capped, jittered, reset by a success.

Jitter keeps hundreds of objects that failed together (etcd restarted, containerd
slow) from retrying in lockstep. ``base_delay``/``retry_delay`` are pure functions of the
attempt number (the per-object retries of the work queues); ``kukeon.retrying.Backoff``
is the schedule of one long-lived retry loop (a watch, a lease, a stream that
reconnects). The randomness source can be injected.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .settings import Settings


def base_delay(attempt: int, *, settings: Settings) -> float:
    """The un-jittered delay before retry number ``attempt`` (1 = the first retry)."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    # Cap the exponent first: 2.0 ** 2000 overflows long before the cap applies.
    exponent = min(attempt - 1, 64)
    delay = settings.backoff_initial * settings.backoff_factor**exponent
    return min(delay, settings.backoff_max)


def retry_delay(
    attempt: int,
    *,
    settings: Settings,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """``base_delay`` scaled by a random factor in [1 - jitter, 1 + jitter], never above the cap."""
    base = base_delay(attempt, settings=settings)
    jitter = settings.backoff_jitter
    scaled = base * uniform(1.0 - jitter, 1.0 + jitter)
    return min(scaled, settings.backoff_max)
