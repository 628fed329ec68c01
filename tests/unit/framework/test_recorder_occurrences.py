"""The recorder's named occurrences: one thing reported twice is counted once."""

from __future__ import annotations

from kukeon.api import EventType
from kukeon.framework import EventRecorder

from .test_recorder import MemorySink, _cell, _drain


async def test_an_occurrence_reported_again_is_not_counted_again() -> None:
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1")
    cell = _cell()
    message = "container app was killed by the OOM killer (exit code 137)"
    for _ in range(2):
        recorder.event(
            cell, "OOMKilled", message, type=EventType.WARNING, occurrence="app pid 7 exited t1"
        )
    recorder.event(cell, "OOMKilled", message, type=EventType.WARNING, occurrence="app pid 9")
    # The same occurrence of another cell (another uid) is its own Event.
    recorder.event(_cell(uid="u-2"), "OOMKilled", message, occurrence="app pid 7 exited t1")
    await _drain(recorder)

    counts = sorted(event.count for event in sink.events.values())
    assert counts == [1, 2]
    assert recorder.repeats == 1


async def test_an_occurrence_dropped_for_a_full_queue_is_not_remembered() -> None:
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1", queue_size=1)
    cell = _cell()
    recorder.event(cell, "Started", "started container app")
    recorder.event(cell, "Exited", "container app exited with code 1 (Error)", occurrence="x")
    await _drain(recorder)
    recorder.event(cell, "Exited", "container app exited with code 1 (Error)", occurrence="x")
    await _drain(recorder)

    assert {event.reason: event.count for event in sink.events.values()} == {
        "Started": 1,
        "Exited": 1,
    }
    assert recorder.repeats == 0


async def test_the_occurrences_remembered_are_bounded() -> None:
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1", cache_size=2)
    cell = _cell()
    for name in ("a", "b", "c", "a"):
        recorder.event(
            cell, "Exited", "container app exited with code 0 (Completed)", occurrence=name
        )
    await _drain(recorder)

    # "a" was forgotten when "c" came: reported again, it counts.
    [exited] = sink.events.values()
    assert exited.count == 4
