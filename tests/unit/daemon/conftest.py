"""What the daemon's garbage-collection tests share."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture
def no_automatic_collections() -> Iterator[None]:
    """Only what the test runs collects (as when the thresholds are far away)."""
    enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
