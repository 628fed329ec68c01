"""kukeond's startup objects are kept out of the collector's passes, which run less often."""

from __future__ import annotations

import gc

from kukeon.daemon import gcpolicy


def test_startup_objects_are_frozen_and_collections_are_rarer() -> None:
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    try:
        gcpolicy.apply_after_startup()
        assert gc.get_freeze_count() > 0
        young, middle, full = gc.get_threshold()
        assert (young, middle, full) == (
            gcpolicy.YOUNG_THRESHOLD,
            gcpolicy.MIDDLE_THRESHOLD,
            gcpolicy.FULL_THRESHOLD,
        )
        assert young > thresholds[0]
        assert full > thresholds[2]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
