"""What kukeond says when a container's log copier exits and the container has ended too."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from kukeon.api import AnyResource
from kukeon.api.event import EventReason, EventType
from kukeon.controllers.logcopiers import LogCopiers, _Watched
from kukeon.framework import EventRecorder
from kukeon.processes import ProcessId
from kukeon.runtime.containerd.logcopier import Terminal

from .hostfakes import cell


class Recorded(EventRecorder):
    def __init__(self) -> None:  # no sink: the Events are kept here
        self.said: list[tuple[str, EventType, str]] = []

    def event(
        self,
        obj: AnyResource,
        reason: str,
        message: str,
        *,
        type: EventType = EventType.NORMAL,
        occurrence: str | None = None,
    ) -> None:
        self.said.append((reason, type, message))


@pytest.mark.parametrize("kept", [True, False])
async def test_a_copier_that_exits_after_its_container_is_said_to_leave_the_rest_to_the_keeper(
    monkeypatch: pytest.MonkeyPatch, kept: bool
) -> None:
    def start(
        self: LogCopiers,
        task: ProcessId,
        log_file: Path,
        terminal: Terminal | None,
        cgroup_procs: Sequence[Path],
    ) -> tuple[None, tuple[None, None], bool, bool]:
        joined.append(tuple(cgroup_procs))
        return None, (None, None), False, kept  # the task is gone; its keeper runs, or not

    joined: list[tuple[Path, ...]] = []
    monkeypatch.setattr(LogCopiers, "_start", start)
    recorder = Recorded()
    copiers = LogCopiers(recorder=recorder, copier_procs=lambda realm: (Path(f"/cg/{realm}"),))
    entry = _Watched(
        key=("r", "s", "st", "c"),
        container="main",
        pid=10,
        log=Path("/nowhere/main.log"),
        cell=cell(),
        task=ProcessId(pid=10, started=1),
    )
    await copiers._replace(entry)
    assert joined == [(Path("/cg/r"),)]  # a replacement would join its realm's copiers
    if not kept:  # nothing waits anywhere: nothing to say (as before)
        assert recorder.said == []
        return
    [(reason, kind, message)] = recorder.said
    assert reason == EventReason.LOG_COPIER_REPLACED
    assert kind == EventType.WARNING
    assert "exited after the container ended" in message
    assert "once the task is deleted" in message
