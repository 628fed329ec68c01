"""A running container's replacement is tried under another id before its old task is
stopped (`celltrial`): a refusal there holds the update (the old container runs on, the
cell Degraded); a held container's probes go on; a sibling's pull does not replace what
a Degraded cell says."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, cast

import pytest

from kukeon.api import CellState, CellStatus, ContainerSpec, ContainerState
from kukeon.controllers.cellexec import LABEL_TRIAL, missing_bind_source
from kukeon.controllers.cellplan import ProbeView
from kukeon.controllers.celltrial import trial_name
from kukeon.framework import HandlerContext, PermanentError
from kukeon.runtime.containerd.errors import SpecRefusedError, missing_mount_source
from kukeon.runtime.containerd.tasks import TaskStatus

from .test_cell_controller import CID, FakeTasks, Rig, app, make_cell, rig  # noqa: F401
from .test_probing import KEY, Harness, harness, the_cell  # noqa: F401

TMPFS_REFUSAL = (
    'error mounting "tmpfs" to rootfs at "/t": mount tmpfs:/t (via /proc/self/fd/6), '
    "flags: 0xe, data: mpol=bind:9: invalid argument"
)
MISSING_SOURCE = (
    "runc create failed: unable to start container process: error during container init: "
    'error mounting "/srv/later" to rootfs at "/data": stat /srv/later: no such file or '
    "directory: unknown"
)


def _refusing_trials(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fake runtime refuses the tmpfs of a trial's task (only the trial's)."""
    tried: list[str] = []
    create = FakeTasks.create

    async def refusing(self: FakeTasks, cid: str, **kwargs: Any) -> None:
        if cid == trial_name(CID):
            tried.append(cid)
            raise SpecRefusedError(
                container_id=cid, setting="tmpfs", target="/t", data="mpol=bind:9", detail="x"
            )
        await create(self, cid, **kwargs)

    monkeypatch.setattr(FakeTasks, "create", refusing)
    return tried


async def test_a_replacement_its_trial_refuses_leaves_the_old_container_running(
    rig: Rig,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cell = await rig.reconcile(make_cell(app()))
    pid = cell.status.containers[0].pid
    tried = _refusing_trials(monkeypatch)
    changed = make_cell(app(tmpfs=[{"path": "/t", "options": ["mpol=bind:9"]}]))
    changed = changed.model_copy(update={"status": cell.status})
    with pytest.raises(PermanentError) as failed:
        await rig.controller.reconcile(changed, cast(HandlerContext, rig.ctx))
    assert failed.value.reason == "InvalidSpec"
    cell = rig.latest(changed)
    assert tried == [trial_name(CID)]
    stopped = [call for call in rig.world.calls if call in (("stop", CID), ("kill", CID))]
    assert not stopped  # it was stopped first, and the cell Failed
    assert (str(cell.status.state), cell.status.reason) == ("Degraded", "InvalidSpec")
    assert "tmpfs[0].options" in (cell.status.message or "")
    [status] = cell.status.containers
    assert (status.state, status.ready, status.pid) == (ContainerState.RUNNING, True, pid)
    assert rig.world.tasks[CID].status == TaskStatus.RUNNING
    assert trial_name(CID) not in rig.world.containers  # the trial is removed
    assert trial_name(CID) not in rig.world.tasks
    assert "Created" not in rig.recorder.reasons()[1:]  # the trial's making is not said

    monkeypatch.undo()  # the spec now taken: the update rolls forward
    cell = await rig.reconcile(changed.model_copy(update={"status": cell.status}))
    assert str(cell.status.state) == "Ready"
    assert cell.status.containers[0].pid not in (None, pid)
    made = rig.world.containers[CID]
    assert LABEL_TRIAL not in made.labels


async def test_a_first_start_makes_no_trial(rig: Rig) -> None:  # noqa: F811
    await rig.reconcile(make_cell(app()))
    assert ("create", trial_name(CID)) not in rig.world.calls


def test_a_missing_bind_source_names_its_volume() -> None:
    assert missing_mount_source(MISSING_SOURCE) == ("/srv/later", "/data")
    assert missing_mount_source(TMPFS_REFUSAL) is None
    container = ContainerSpec.model_validate(
        {
            "id": "app",
            "image": "busybox",
            "volumes": [
                {"source": "/srv/other", "target": "/other"},
                {"source": "/srv/later", "target": "/data/"},
            ],
        }
    )
    refused = missing_bind_source(container, MISSING_SOURCE)
    assert refused is not None
    assert str(refused).startswith("container 'app': volumes[1].source: '/srv/later' does not")
    assert missing_bind_source(container, TMPFS_REFUSAL) is None


async def test_a_held_containers_probes_go_on(harness: Harness) -> None:  # noqa: F811
    spec = ContainerSpec.model_validate(
        {"id": "app", "image": "busybox", "readinessProbe": {"exec": {"command": ["true"]}}}
    )
    harness.sync(spec)
    assert harness.manager.view(KEY, "app") is not None
    manager = harness.manager
    manager.sync(the_cell(), KEY, namespace="ns", address="127.0.0.1", running=[], held={"app"})
    assert manager.view(KEY, "app") is not None  # held: its probes as they were
    manager.sync(the_cell(), KEY, namespace="ns", address="127.0.0.1", running=[])
    assert manager.view(KEY, "app") is None


async def test_a_siblings_pull_does_not_replace_a_held_update_said(rig: Rig) -> None:  # noqa: F811
    cell = await rig.reconcile(make_cell(app()))
    held = cell.status.model_copy(
        update={"state": CellState.DEGRADED, "reason": "BindSourceRefused", "message": "held"}
    )
    rig.images.pull = True
    degraded = cell.model_copy(update={"status": CellStatus.model_validate(held.model_dump())})
    await rig.controller.reconcile(degraded, cast(HandlerContext, rig.ctx))
    assert all(write.get("reason") != "Pulling" for write in rig.ctx.writes)
    assert "Pulling" in rig.recorder.reasons()  # the Event still tells of the pull


class HeldProbes:
    """The probes' view of the old task: now failing its readiness."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.held: list[Collection[str]] = []

    def view(self, key: tuple[str, ...], container: str) -> ProbeView:
        return ProbeView(pid=self.pid, started=True, ready=False, probes=())

    def views(self, key: tuple[str, ...]) -> Callable[[str], ProbeView]:
        return lambda container: self.view(key, container)

    def kill(self, key: tuple[str, ...], container: str) -> None:
        return None

    def sync(self, *args: Any, held: Collection[str] = (), **kwargs: Any) -> None:
        self.held.append(held)


async def test_a_held_container_shows_what_its_probes_say(
    rig: Rig,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its status was the last one written, ready as it was then, and its probes were not
    handed the pass at all."""
    cell = await rig.reconcile(make_cell(app()))
    pid = cell.status.containers[0].pid
    assert pid
    probes = HeldProbes(pid)
    rig.controller.probes = cast(Any, probes)
    _refusing_trials(monkeypatch)
    changed = make_cell(app(tmpfs=[{"path": "/t", "options": ["mpol=bind:9"]}]))
    with pytest.raises(PermanentError):
        await rig.controller.reconcile(
            changed.model_copy(update={"status": cell.status}), cast(HandlerContext, rig.ctx)
        )
    [status] = rig.latest(changed).status.containers
    assert (status.state, status.pid, status.ready) == (ContainerState.RUNNING, pid, False)
    assert probes.held == [frozenset({"app"})]
