"""One exit, one Event: the cell controller's Events through the real recorder.

A cell's pass decides that an exit is news by comparing what containerd says with the
status last reported, and that status is the framework's cached copy of the cell. Two
passes can see the same exit: containerd wakes the cell once for ``/tasks/oom`` and once
for ``/tasks/exit``, and the second pass may run before the first pass's status write
came back through the watch (it is handed the cell as it was: the container running);
or a pass notes the exit and then fails before its status write lands, and its retry
sees the exit again. Whatever the cause, the exit is counted once; distinct exits (a
container that restarts and exits again) are counted each.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import timedelta
from typing import Any, cast

import pytest

from kukeon.api import Cell, Event
from kukeon.framework import EventRecorder, HandlerContext, Requeue, TemporaryError
from kukeon.runtime.containerd.tasks import TaskStatus
from kukeon.store import Conflict

from .test_cell_controller import CID, NODE, T0, Rig, app, make_cell
from .test_cell_controller import rig as rig  # the fixture


class MemoryEvents:
    """The Event store's contract in memory: the name says which Event, a repeat counts."""

    def __init__(self) -> None:
        self.stored: dict[str, Event] = {}

    async def record(self, occurrence: Event, *, seen: Event | None = None) -> Event:
        name = occurrence.metadata.name
        current = self.stored.get(name)
        if current is None:
            stored = occurrence
        else:
            stored = current.model_copy(update={"count": current.count + 1})
        self.stored[name] = stored
        return stored

    def counts(self) -> Counter[str]:
        return Counter({event.reason: event.count for event in self.stored.values()})


@pytest.fixture
def events(rig: Rig) -> MemoryEvents:
    """The rig's controller records through a real ``EventRecorder`` into memory."""
    sink = MemoryEvents()
    rig.controller.recorder = EventRecorder(sink=sink, node_name=NODE)
    return sink


async def _written(rig: Rig, events: MemoryEvents) -> Counter[str]:
    recorder = rig.controller.recorder
    assert recorder is not None
    await recorder.flush()
    return events.counts()


async def _pass(rig: Rig, cell: Cell) -> None:
    """One pass that may end waiting for a restart's backoff."""
    with contextlib.suppress(TemporaryError, Requeue):
        await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))


async def test_a_second_wake_up_on_the_cached_cell_counts_the_oom_kill_once(
    rig: Rig, events: MemoryEvents
) -> None:
    running = await rig.reconcile(make_cell(app()))
    rig.world.exit(CID, 137, at=T0 + timedelta(seconds=1), status=TaskStatus.STOPPED)
    rig.cgroups.oom_kills = 1
    rig.at(2)
    # /tasks/oom wakes the cell: it sees the exit and writes it.
    written = await rig.reconcile(running)
    assert written.status.containers[0].reason == "OOMKilled"
    # /tasks/exit wakes it again before that write came back through the watch: the pass
    # is handed the cell as cached, where the container still runs.
    rig.at(2.1)
    again = await rig.reconcile(running)
    assert again.status.containers[0].reason == "OOMKilled"
    counts = await _written(rig, events)
    assert counts["OOMKilled"] == 1
    assert "Exited" not in counts


async def test_an_exit_noted_by_a_pass_whose_status_write_failed_counts_once(
    rig: Rig, events: MemoryEvents
) -> None:
    running = await rig.reconcile(make_cell(app()))
    rig.world.exit(CID, 137, at=T0 + timedelta(seconds=1), status=TaskStatus.STOPPED)
    rig.cgroups.oom_kills = 1
    rig.at(2)
    refused = rig.ctx.patch_status

    async def conflict(obj: Any, /, *, observe: bool = True, **fields: Any) -> Cell:
        raise Conflict("the cell's status write lost every compare-and-swap")

    rig.ctx.patch_status = conflict  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        await rig.controller.reconcile(running, cast(HandlerContext, rig.ctx))
    rig.ctx.patch_status = refused  # type: ignore[method-assign]
    # The framework retries with the cell it has: the exit is seen again.
    rig.at(3)
    written = await rig.reconcile(running)
    assert written.status.containers[0].reason == "OOMKilled"
    assert (await _written(rig, events))["OOMKilled"] == 1


async def test_a_lost_task_seen_twice_on_the_cached_cell_counts_once(
    rig: Rig, events: MemoryEvents
) -> None:
    """No exit time from containerd: each pass takes its clock's, yet it is one exit."""
    running = await rig.reconcile(make_cell(app()))
    del rig.world.tasks[CID]
    rig.at(1)
    await rig.reconcile(running)
    rig.at(2)
    await rig.reconcile(running)
    assert (await _written(rig, events))["Exited"] == 1


async def test_each_exit_of_a_restarting_container_counts(rig: Rig, events: MemoryEvents) -> None:
    cell = await rig.reconcile(
        make_cell(app(restartPolicy="on-failure", restartMaxRetries=3, restartBackoffSeconds=1))
    )
    for exit_at in (10, 20, 30):
        rig.world.exit(CID, 3, at=T0 + timedelta(seconds=exit_at), status=TaskStatus.STOPPED)
        rig.at(exit_at + 0.5)
        await _pass(rig, cell)  # the exit, and a back-off
        cell = rig.latest(cell)
        await _pass(rig, cell)  # a wake-up on the same exit
        cell = rig.latest(cell)
        rig.at(exit_at + 2)
        cell = await rig.reconcile(cell)  # the restart
    counts = await _written(rig, events)
    assert counts["Exited"] == 3
    assert counts["Restarted"] == 3
    assert counts["BackOff"] == 6
