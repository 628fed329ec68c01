"""A cell's stop grace is waited out by no pass: a pass signals and ends with Requeue.

The cell controller against the fake host of ``test_cell_controller``, with tasks that
ignore every signal but SIGKILL and a clock of the test's (``stopgraces.boot_clock``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest

from kukeon.api import Cell, CellState, ContainerState
from kukeon.controllers import stopgraces
from kukeon.controllers.cellfailures import ContainersFailedError, FailedContainers
from kukeon.framework import HandlerContext, Requeue, TemporaryError
from kukeon.runtime.containerd.tasks import TaskStatus
from tests.unit.controllers.test_cell_controller import (  # noqa: F401 - the fixture
    CID,
    T0,
    Rig,
    app,
    make_cell,
    rig,
)

GRACE = 30


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(stopgraces, "boot_clock", lambda: now[0])
    monkeypatch.setattr(stopgraces, "SETTLE_SECONDS", 0.01)
    return now


def deleting(cell: Cell, grace: int | None = None) -> Cell:
    metadata = cell.metadata.model_copy(
        update={"deletion_timestamp": T0, "deletion_grace_period_seconds": grace}
    )
    return cell.model_copy(update={"metadata": metadata})


def record(rig: Rig) -> Path:  # noqa: F811 - the fixture's name
    return rig.controller.host.settings.state_dir / "cells/r/s/st/c" / stopgraces.STOPPING_FILE


async def finalize(rig: Rig, cell: Cell) -> float | None:  # noqa: F811
    """One finalize pass: the Requeue's delay, None when it finished."""
    try:
        await rig.controller.finalize(cell, cast(HandlerContext, rig.ctx))
    except Requeue as waiting:
        reason, delay = waiting.reason, waiting.delay
    else:
        return None
    assert reason == stopgraces.STOPPING
    return delay


async def deaf_running_cell(rig: Rig) -> Cell:  # noqa: F811
    """A Ready cell whose task ignores every signal but SIGKILL."""
    rig.world.deaf = True
    return await rig.reconcile(make_cell(app(), terminationGracePeriodSeconds=GRACE))


async def waits_out_the_grace(rig: Rig, cell: Cell) -> None:  # noqa: F811
    """A reconcile of ``cell`` ends asking to come back at the end of its whole grace."""
    with pytest.raises(Requeue) as waiting:
        await rig.reconcile(cell)
    assert waiting.value.delay == GRACE


async def deleted_deaf_cell(rig: Rig) -> Cell:  # noqa: F811
    """A running cell whose task ignores its signal, deleted: its first finalize pass
    signalled it and asked to come back at the end of its whole grace."""
    cell = deleting(await deaf_running_cell(rig))
    assert await finalize(rig, cell) == GRACE
    assert rig.world.calls.count(("kill", CID)) == 1
    return cell


async def test_a_deaf_cells_deletion_waits_out_its_grace_in_no_pass(
    rig: Rig,  # noqa: F811
    clock: list[float],
) -> None:
    cell = await deleted_deaf_cell(rig)
    assert rig.world.tasks[CID].status == TaskStatus.RUNNING
    assert CID in rig.world.containers
    clock[0] += 10  # a pass before the deadline (a resync): no second signal, no SIGKILL
    assert await finalize(rig, cell) == GRACE - 10
    assert rig.world.calls.count(("kill", CID)) == 1
    assert ("sigkill", CID) not in rig.world.calls
    clock[0] += GRACE - 10  # the deadline's pass: SIGKILL, then everything goes
    assert await finalize(rig, cell) is None
    assert ("sigkill", CID) in rig.world.calls
    assert rig.world.containers == {}
    assert rig.world.tasks == {}
    assert rig.cgroups.removed == [("r", "s", "st", "c")]


async def test_a_shorter_grace_given_later_ends_the_wait(
    rig: Rig,  # noqa: F811
    clock: list[float],
) -> None:
    cell = await deleted_deaf_cell(rig)
    clock[0] += 1
    assert await finalize(rig, deleting(cell, grace=0)) is None
    assert rig.world.calls.count(("kill", CID)) == 1
    assert ("sigkill", CID) in rig.world.calls
    assert rig.world.containers == {}


async def test_a_restarted_kukeond_keeps_the_deadline_and_signals_no_one_again(
    rig: Rig,  # noqa: F811
    clock: list[float],
) -> None:
    cell = await deleted_deaf_cell(rig)
    assert record(rig).exists()
    rig.controller.stop_graces = stopgraces.StopGraces()  # what a new process remembers
    clock[0] += 20
    assert await finalize(rig, cell) == GRACE - 20
    assert rig.world.calls.count(("kill", CID)) == 1
    clock[0] += GRACE - 20
    assert await finalize(rig, cell) is None
    assert not record(rig).exists()


async def test_a_stop_given_up_for_a_start_is_forgotten(
    rig: Rig,  # noqa: F811
    clock: list[float],
) -> None:
    """Stopped, then Running again mid-grace (the task still runs), then Stopped: the
    second stop signals again and waits its whole grace."""
    running = await deaf_running_cell(rig)
    stopped = make_cell(app(), terminationGracePeriodSeconds=GRACE, desiredState="Stopped")
    stopped = stopped.model_copy(update={"status": running.status})
    await waits_out_the_grace(rig, stopped)
    assert record(rig).exists()
    assert rig.recorder.reasons()[-1] == "Killing"
    clock[0] += 20
    await rig.reconcile(running)
    assert not record(rig).exists()
    await waits_out_the_grace(rig, stopped)
    assert rig.world.calls.count(("kill", CID)) == 2
    clock[0] += GRACE
    cell = await rig.reconcile(stopped)
    assert str(cell.status.state) == "Stopped"
    assert ("sigkill", CID) in rig.world.calls
    assert not record(rig).exists()


async def test_a_restart_of_a_deaf_container_waits_out_its_grace_in_no_pass(
    rig: Rig,  # noqa: F811
    clock: list[float],
) -> None:
    """``kukectl restart``: the old task is signalled, the pass ends waiting; at the
    deadline it is SIGKILLed and a new container runs."""
    cell = await deaf_running_cell(rig)
    metadata = cell.metadata.model_copy(update={"annotations": {"kukeon.io/restartedAt": "now"}})
    asked = cell.model_copy(update={"metadata": metadata})
    await waits_out_the_grace(rig, asked)
    assert rig.world.calls.count(("kill", CID)) == 1
    assert rig.world.containers[CID].labels["kukeon.io/restarted-at"] == ""  # the old one
    clock[0] += GRACE
    restarted = await rig.reconcile(asked)
    assert ("sigkill", CID) in rig.world.calls
    assert rig.world.containers[CID].labels["kukeon.io/restarted-at"] == "now"
    assert restarted.status.containers[0].state == ContainerState.RUNNING
    assert not record(rig).exists()


async def test_a_restarted_root_keeps_its_new_start_while_its_sibling_waits_its_grace(
    rig: Rig,  # noqa: F811
    clock: list[float],
) -> None:
    """``kukectl restart`` of two deaf containers: the pass that starts the new root ends
    waiting for the sidecar's grace; the root's new start is written then, so the next
    pass, which finds it running, keeps it (it kept the old startTime, and kukectl
    restart, waiting for a new start of every container, timed out)."""
    rig.world.deaf = True
    cell = await rig.reconcile(
        make_cell(app(), {"id": "side", "image": "busybox"}, terminationGracePeriodSeconds=GRACE)
    )
    metadata = cell.metadata.model_copy(update={"annotations": {"kukeon.io/restartedAt": "now"}})
    asked = cell.model_copy(update={"metadata": metadata})
    await waits_out_the_grace(rig, asked)  # the root's old task signalled
    clock[0] += GRACE
    rig.at(GRACE)
    with pytest.raises(Requeue):  # a new root runs; the sidecar's old task signalled
        await rig.reconcile(asked)
    asked = rig.latest(asked)
    assert rig.world.containers[CID].labels["kukeon.io/restarted-at"] == "now"
    root = asked.status.containers[0]
    assert (root.id, root.start_time) == ("app", T0 + timedelta(seconds=GRACE))
    clock[0] += GRACE
    rig.at(2 * GRACE)
    done = await rig.reconcile(asked)
    starts = {c.id: c.start_time for c in done.status.containers}
    assert starts == {
        "app": T0 + timedelta(seconds=GRACE),
        "side": T0 + timedelta(seconds=2 * GRACE),
    }


async def test_a_deaf_container_dropped_from_the_spec_waits_out_its_grace_in_no_pass(
    rig: Rig,  # noqa: F811
    clock: list[float],
) -> None:
    """A sidecar dropped from the spec: its task is signalled, the pass writes the cell's
    status (the app alone) and ends waiting (its deadline kept by a restarted kukeond);
    at the deadline it is SIGKILLed and goes."""
    rig.world.deaf = True
    side = "s_st_c_side"
    both_running = make_cell(
        app(), {"id": "side", "image": "busybox"}, terminationGracePeriodSeconds=GRACE
    )
    cell = await rig.reconcile(both_running)
    dropped = cell.model_copy(
        update={"spec": cell.spec.model_copy(update={"containers": cell.spec.containers[:1]})}
    )
    await waits_out_the_grace(rig, dropped)
    assert rig.world.calls.count(("kill", side)) == 1
    assert rig.world.tasks[side].status == TaskStatus.RUNNING
    assert [c.id for c in rig.latest(dropped).status.containers] == ["app"]
    assert record(rig).exists()
    rig.controller.stop_graces = stopgraces.StopGraces()  # a restarted kukeond keeps it
    clock[0] += 10  # a pass before the deadline: no second signal, no SIGKILL
    with pytest.raises(Requeue) as waiting:
        await rig.reconcile(dropped)
    assert waiting.value.delay == GRACE - 10
    assert ("sigkill", side) not in rig.world.calls
    clock[0] += GRACE - 10
    done = await rig.reconcile(dropped)
    assert ("sigkill", side) in rig.world.calls
    assert side not in rig.world.containers
    assert rig.world.tasks[CID].status == TaskStatus.RUNNING
    assert [c.id for c in done.status.containers] == ["app"]
    assert not record(rig).exists()


async def test_the_sooner_of_a_passs_own_wait_and_a_drop_s_grace_ends_it() -> None:
    """`waited`: the status written first; then the sooner of the two Requeues."""
    waiting = Requeue("stopping", delay=20, reason=stopgraces.STOPPING)

    async def own(delay: float) -> None:
        raise Requeue("back-off", delay=delay, reason="CrashLoopBackOff")

    async def finished() -> None:
        return None

    for delay, reason in ((5, "CrashLoopBackOff"), (50, stopgraces.STOPPING)):
        with pytest.raises(Requeue) as ended:
            await stopgraces.waited(waiting, own(delay))
        assert ended.value.reason == reason
    with pytest.raises(Requeue) as ended:
        await stopgraces.waited(waiting, finished())
    assert ended.value is waiting


async def test_a_siblings_temporary_failure_comes_back_by_a_drop_s_deadline() -> None:
    """A sibling failing for a while (`ContainersFailedError`, TemporaryError) ends the
    pass: its back-off (up to minutes) is capped at the grace left, so the dropped
    container's SIGKILL comes at its deadline, not a back-off step late."""
    waiting = Requeue("stopping", delay=20, reason=stopgraces.STOPPING)
    failed = FailedContainers(
        state=CellState.DEGRADED,
        reason="ContainerdUnavailable",
        message="containerd refused",
        retry=TemporaryError,
        statuses={},
        events=(),
        failures=(),
    )

    async def failing(wake_in: float | None) -> None:
        raise ContainersFailedError(failed, wake_in=wake_in)

    for wake_in, at_most in ((None, 20), (5, 5), (50, 20)):
        with pytest.raises(ContainersFailedError) as ended:
            await stopgraces.waited(waiting, failing(wake_in))
        retry = ended.value.retry()
        assert isinstance(retry, TemporaryError)
        assert (retry.delay, retry.at_most) == (None, at_most)  # back-off, capped


async def test_a_deleted_cell_is_forgotten_wherever_it_ran(
    rig: Rig,  # noqa: F811
    clock: list[float],
) -> None:
    """A cell whose Running pass ran here is remembered as looked for (``abandon``) until
    it is deleted, also when its finalize ran on no node of this process's (it moved, or
    went from etcd): the delete event forgets it, so such keys do not pile up."""
    running = await deaf_running_cell(rig)
    graces = rig.controller.stop_graces
    assert graces._checked
    graces.changed(running, deleted=False)
    assert graces._checked
    graces.changed(running, deleted=True)
    assert not graces._checked
