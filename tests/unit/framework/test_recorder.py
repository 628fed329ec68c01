"""The event recorder: queued without waiting, repeats aggregated, drops counted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from kukeon.api import Cell, Event, EventType, Node, parse_resource
from kukeon.framework import EventRecorder, metrics_for


class MemorySink:
    """The store's contract in memory: the name says which Event, a repeat bumps it."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], Event] = {}
        self.writes = 0
        self.seen_hits = 0
        self.fail = False
        self.revision = 0

    async def record(self, occurrence: Event, *, seen: Event | None = None) -> Event:
        if self.fail:
            raise RuntimeError("etcd is away")
        self.writes += 1
        self.revision += 1
        name = (occurrence.metadata.realm, occurrence.metadata.name)
        current = self.events.get(name)
        if seen is not None and current is not None:
            self.seen_hits += seen.metadata.resource_version == current.metadata.resource_version
        if current is None:
            stored = occurrence.model_copy(deep=True)
        else:
            stored = current.model_copy(
                update={"count": current.count + 1, "last_timestamp": occurrence.last_timestamp},
                deep=True,
            )
        stored.metadata.resource_version = str(self.revision)
        self.events[name] = stored
        return stored


def _cell(name: str = "web", uid: str = "u-1") -> Cell:
    cell = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name, "uid": uid},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "containers": [{"id": "app", "image": "busybox"}],
            },
        }
    )
    assert isinstance(cell, Cell)
    return cell


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


async def _drain(recorder: EventRecorder) -> None:
    task = asyncio.create_task(recorder.run())
    for _ in range(100):
        if recorder.pending == 0:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_repeats_of_one_event_bump_its_count() -> None:
    sink = MemorySink()
    clock = Clock()
    recorder = EventRecorder(sink=sink, node_name="n1", clock=clock)
    cell = _cell()
    for _ in range(3):
        recorder.event(cell, "Restarted", "restarted container app")
    recorder.event(cell, "OOMKilled", "container app was OOM-killed", type=EventType.WARNING)
    await _drain(recorder)

    assert len(sink.events) == 2
    restarted = next(e for e in sink.events.values() if e.reason == "Restarted")
    assert restarted.count == 3
    assert restarted.first_timestamp is not None
    assert restarted.last_timestamp is not None
    assert restarted.last_timestamp - restarted.first_timestamp == timedelta(seconds=2)
    assert restarted.involved_object.key == ("r", "s", "st", "web")
    assert restarted.involved_object.uid == "u-1"
    assert restarted.source.node == "n1"
    assert restarted.metadata.name.startswith("web.")
    # The cached version was handed back for each repeat: one write each, no read.
    assert sink.seen_hits == 2
    oom = next(e for e in sink.events.values() if e.reason == "OOMKilled")
    assert oom.type == EventType.WARNING
    assert oom.count == 1


async def test_another_uid_or_message_is_another_event() -> None:
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1")
    recorder.event(_cell(uid="u-1"), "Started", "started container app")
    recorder.event(_cell(uid="u-2"), "Started", "started container app")
    recorder.event(_cell(uid="u-2"), "Started", "started container sidecar")
    await _drain(recorder)
    assert len(sink.events) == 3
    assert {e.count for e in sink.events.values()} == {1}


async def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    metrics_registry = CollectorRegistry()
    metrics = metrics_for(metrics_registry)
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1", metrics=metrics, queue_size=2)
    cell = _cell()
    for n in range(5):  # nothing writes yet: the third and later do not fit
        recorder.event(cell, "Started", f"started container c{n}")
    assert recorder.pending == 2
    assert recorder.dropped["queue_full"] == 3
    value = metrics_registry.get_sample_value(
        "kukeon_events_dropped_total", {"reason": "queue_full"}
    )
    assert value == 3
    await _drain(recorder)
    assert sink.writes == 2
    assert metrics_registry.get_sample_value("kukeon_events_written_total") == 2


async def test_a_failed_write_is_dropped_and_the_writer_goes_on() -> None:
    metrics_registry = CollectorRegistry()
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1", metrics=metrics_for(metrics_registry))
    sink.fail = True
    recorder.event(_cell(), "Started", "started container app")
    await _drain(recorder)
    assert recorder.dropped["write_failed"] == 1
    assert (
        metrics_registry.get_sample_value("kukeon_events_dropped_total", {"reason": "write_failed"})
        == 1
    )
    sink.fail = False
    recorder.event(_cell(), "Started", "started container app")
    await _drain(recorder)
    assert [e.count for e in sink.events.values()] == [1]


async def test_objects_outside_a_realm_have_no_events() -> None:
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1")
    node = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Node", "metadata": {"name": "n1"}}
    )
    assert isinstance(node, Node)
    recorder.event(node, "Ready", "ready")
    assert recorder.pending == 0


async def test_flush_writes_what_is_queued() -> None:
    sink = MemorySink()
    recorder = EventRecorder(sink=sink, node_name="n1")
    recorder.event(_cell(), "Deleted", "deleted from node n1")
    await recorder.flush()
    assert [e.reason for e in sink.events.values()] == ["Deleted"]
