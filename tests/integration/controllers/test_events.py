"""What kukeond's controllers note as Events: a cell that runs and restarts, one that the
OOM killer ends, and Events going by themselves after their TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from kukeon.api import AnyResource, Cell, Event, EventType, Kind
from kukeon.daemon.app import Daemon
from kukeon.store.events import EventStore
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

HOG = "dd if=/dev/zero of=/dev/null bs=64M count=4"  # as in test_exit_reasons


def _store(k: Kukeond) -> EventStore:
    assert k.daemon.events is not None
    return k.daemon.events


async def _events_until(
    k: Kukeond, done: Callable[[list[Event]], bool], *, within: float = 60.0
) -> list[Event]:
    """The realm's Events once ``done`` says so; the last list in the failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    events: list[Event] = []
    while loop.time() < deadline:
        events = (await _store(k).list(k.realm)).items
        if done(events):
            return events
        await asyncio.sleep(0.3)
    shown = [(e.involved_object.path, e.reason, e.count, e.message) for e in events]
    raise AssertionError(f"the Events did not get there: {shown}")


def _of(events: list[Event], name: str) -> dict[str, Event]:
    return {e.reason: e for e in events if e.involved_object.name == name}


async def test_a_restarting_and_an_oom_killed_cell_say_so(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    crash = container(
        k,
        "app",
        script="sleep 0.3; exit 3",
        restartPolicy="on-failure",
        restartMaxRetries=2,
        restartBackoffSeconds=1,
    )
    hog = container(
        k,
        "app",
        script=HOG,
        restartPolicy="never",
        resources={"memoryLimitBytes": 16 * 1024 * 1024},
    )
    missing = {"id": "app", "image": k.image.name, "command": "/nonexistent-binary"}
    await k.apply(cell_doc(k, "crash", [crash]))
    await k.apply(cell_doc(k, "hog", [hog]))
    await k.apply(cell_doc(k, "missing", [missing]))

    def gave_up(cell: AnyResource) -> bool:
        assert isinstance(cell, Cell)
        first = cell.status.containers[0] if cell.status.containers else None
        return first is not None and first.restart_count == 2 and first.exit_code == 3

    await k.wait_for(Kind.CELL, cell_key(k, "crash"), until=gave_up, within=90)

    def complete(events: list[Event]) -> bool:
        crashed, hogged = _of(events, "crash"), _of(events, "hog")
        return (
            crashed.get("Restarted") is not None
            and crashed["Restarted"].count == 2
            and crashed.get("Exited") is not None
            and crashed["Exited"].count == 3
            and "OOMKilled" in hogged
            and "Failed" in _of(events, "missing")
        )

    events = await _events_until(k, complete)
    crashed = _of(events, "crash")
    assert crashed["Created"].count == 1
    assert crashed["Started"].count == 1
    assert crashed["Started"].message == "started container app"
    assert crashed["Exited"].type == EventType.WARNING
    assert crashed["Exited"].message == "container app exited with code 3 (Error)"
    assert crashed["BackOff"].type == EventType.WARNING
    assert crashed["BackOff"].count >= 2
    restarted = crashed["Restarted"]
    assert restarted.first_timestamp is not None
    assert restarted.last_timestamp is not None
    assert restarted.last_timestamp > restarted.first_timestamp
    assert restarted.source.node == k.config.node_name
    cell = await k.registry.get(Kind.CELL, cell_key(k, "crash"))
    assert restarted.involved_object.uid == cell.metadata.uid
    assert restarted.involved_object.key == cell_key(k, "crash")

    oom = _of(events, "hog")["OOMKilled"]
    assert oom.type == EventType.WARNING
    assert oom.count == 1
    assert oom.message == "container app was killed by the OOM killer (exit code 137)"
    assert "Exited" not in _of(events, "hog")  # the OOM kill says why it ended
    failed = _of(events, "missing")["Failed"]
    assert failed.type == EventType.WARNING
    assert failed.message.startswith(
        "CommandNotFound: container 'app': command '/nonexistent-binary'"
    )
    # The layers note that they were built on this node.
    layers = {(e.involved_object.kind, e.reason) for e in events}
    assert {("Realm", "Ready"), ("Space", "Ready"), ("Stack", "Ready")} <= layers

    await k.registry.delete(Kind.CELL, cell_key(k, "hog"))
    await k.wait_gone(Kind.CELL, cell_key(k, "hog"))
    deleted = await _events_until(k, lambda found: "Deleted" in _of(found, "hog"), within=15)
    assert "deleted from node" in _of(deleted, "hog")["Deleted"].message


async def test_events_expire_after_their_ttl(kukeond: Kukeond) -> None:
    k = kukeond
    await k.daemon.stop()
    k.daemon = Daemon(k.config.model_copy(update={"event_ttl_seconds": 3}))
    await k.daemon.start()
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry
    assert _store(k).ttl == 3

    await k.hierarchy()
    await k.apply(cell_doc(k, "web", [container(k, "app")]))
    await k.wait_for(Kind.CELL, cell_key(k, "web"), state="Ready")
    started = await _events_until(k, lambda found: "Started" in _of(found, "web"), within=15)
    assert _of(started, "web")["Started"].count == 1
    # Nothing happens to the running cell any more: etcd drops every Event of the realm.
    await _events_until(k, lambda found: not found, within=30)
