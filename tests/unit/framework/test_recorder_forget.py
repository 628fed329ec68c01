"""The recorder's cache of written Events holds live objects' only: churn does not grow it."""

from __future__ import annotations

from kukeon.api import EventType
from kukeon.framework import EventRecorder

from .test_recorder import MemorySink, _cell, _drain


async def test_a_deleted_objects_events_leave_the_cache() -> None:
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1")
    gone, kept = _cell("gone", uid="u-gone"), _cell("kept", uid="u-kept")
    for cell in (gone, kept):
        recorder.event(cell, "Created", "created container app")
        recorder.event(cell, "Started", "started container app")
    await _drain(recorder)
    assert len(recorder._cache) == 4

    recorder.object_changed(kept, False)  # a change that is not a delete forgets nothing
    recorder.object_changed(_cell("kept", uid="u-older"), True)  # another object of the name
    assert len(recorder._cache) == 4
    recorder.object_changed(gone, True)
    assert {stored.involved_object.uid for stored in recorder._cache.values()} == {"u-kept"}

    recorder.event(kept, "Started", "started container app")  # the live one's repeat: no read
    await _drain(recorder)
    assert sink.seen_hits == 1


async def test_churn_leaves_the_cache_empty_rather_than_full() -> None:
    recorder = EventRecorder(sink=MemorySink(), node_name="n1", cache_size=4096)
    for batch in range(3):
        cells = [_cell(f"c{batch}-{n}", uid=f"u-{batch}-{n}") for n in range(100)]
        for cell in cells:
            recorder.object_changed(cell, False)  # the operator's watch saw it
            for reason in ("Created", "Started", "Killing"):
                recorder.event(cell, reason, f"{reason} container app")
        await _drain(recorder)
        assert len(recorder._cache) == 300
        for cell in cells:
            recorder.object_changed(cell, True)
        assert len(recorder._cache) == 0  # all 900 Events (~3 KiB each) were kept before


async def test_events_written_after_their_objects_delete_are_not_kept() -> None:
    """A deleted cell's Events still queued (its teardown's), or reported by a pass that
    ran on after the delete, are written but not cached: nothing would drop them later."""
    recorder = EventRecorder(sink=MemorySink(), node_name="n1", cache_size=4096)
    for batch in range(3):
        cells = [_cell(f"c{batch}-{n}", uid=f"u-{batch}-{n}") for n in range(100)]
        for cell in cells:
            recorder.object_changed(cell, False)
            recorder.event(cell, "Killing", "stopping container app")
        for cell in cells:
            recorder.object_changed(cell, True)  # deleted before the writer got to them
            recorder.event(cell, "Stopped", "container app stopped")  # a late pass
        await _drain(recorder)
        assert recorder.written == 200 * (batch + 1)
        assert len(recorder._cache) == 0  # all 200 a batch were kept, up to cache_size


async def test_a_deleted_objects_occurrences_are_forgotten() -> None:
    recorder = EventRecorder(sink=MemorySink(), node_name="n1", cache_size=4096)
    kept = _cell("kept", uid="u-kept")
    recorder.object_changed(kept, False)
    recorder.event(kept, "BackOff", "container app exited", occurrence="app pid 1")
    for batch in range(3):
        cells = [_cell(f"c{batch}-{n}", uid=f"u-{batch}-{n}") for n in range(100)]
        for cell in cells:
            recorder.object_changed(cell, False)
            for pid in (7, 8):
                recorder.event(
                    cell,
                    "BackOff",
                    "container app exited",
                    type=EventType.WARNING,
                    occurrence=f"app pid {pid}",
                )
        await _drain(recorder)
        for cell in cells:
            recorder.object_changed(cell, True)
            recorder.event(cell, "BackOff", "container app exited", occurrence="app pid 9")
        await _drain(recorder)
        assert list(recorder._occurrences.values()) == [(("r", "s", "st", "kept"), "u-kept")]
    # The live cell's occurrence is still remembered: reported again, it is not counted.
    recorder.event(kept, "BackOff", "container app exited", occurrence="app pid 1")
    assert recorder.repeats == 1


async def test_an_object_recreated_unseen_takes_the_old_ones_events_away() -> None:
    """A delete and re-create missed while the watch was away: the new uid replaces the
    old one, whose Events go."""
    recorder = EventRecorder(sink=MemorySink(), node_name="n1")
    old, new = _cell("web", uid="u-old"), _cell("web", uid="u-new")
    recorder.object_changed(old, False)
    recorder.event(old, "Started", "started container app")
    await _drain(recorder)
    assert len(recorder._cache) == 1
    recorder.object_changed(new, False)
    assert len(recorder._cache) == 0
    recorder.event(new, "Started", "started container app")
    await _drain(recorder)
    assert [e.involved_object.uid for e in recorder._cache.values()] == ["u-new"]
    assert recorder._live == {("r", "s", "st", "web"): "u-new"}
