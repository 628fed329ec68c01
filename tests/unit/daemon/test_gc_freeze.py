"""kukeond's startup objects are kept out of the collector's full passes (loop pauses)."""

from __future__ import annotations

import gc

from kukeon.daemon.app import freeze_startup_objects


def test_startup_objects_are_frozen() -> None:
    assert gc.get_freeze_count() == 0
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
