"""The recorder's cache of written Events holds live objects' only: churn does not grow it."""

from __future__ import annotations

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
            for reason in ("Created", "Started", "Killing"):
                recorder.event(cell, reason, f"{reason} container app")
        await _drain(recorder)
        assert len(recorder._cache) == 300
        for cell in cells:
            recorder.object_changed(cell, True)
        assert len(recorder._cache) == 0  # all 900 Events (~3 KiB each) were kept before
