"""desiredState Stopped/Running, and the kukeon.io/restartedAt annotation."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from kukeon.api import Cell, DesiredCellState, Kind
from kukeon.daemon.app import Daemon
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, container_ids, get_cell, task_ids, update_cell

pytestmark = pytest.mark.integration

IDS = {"s1_st1_pair_a", "s1_st1_pair_b"}


def pids(cell: Cell) -> dict[str, int | None]:
    return {status.id: status.pid for status in cell.status.containers}


async def test_stop_then_start_a_cell(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "pair")
    await k.apply(cell_doc(k, "pair", [container(k, "a"), container(k, "b")]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(ready, Cell)
    ip = ready.status.network.ip

    await update_cell(k, key, spec={"desired_state": DesiredCellState.STOPPED})
    stopped = await k.wait_for(Kind.CELL, key, state="Stopped", within=30)
    assert isinstance(stopped, Cell)
    assert not IDS & await task_ids(k)
    assert await container_ids(k) >= IDS  # stopped, not deleted
    assert all(str(c.state) == "Stopped" for c in stopped.status.containers)

    await update_cell(k, key, spec={"desired_state": DesiredCellState.RUNNING})
    running = await k.wait_for(Kind.CELL, key, state="Ready", within=30)
    assert isinstance(running, Cell)
    assert await task_ids(k) >= IDS
    assert running.status.network.ip == ip  # the netns outlived the tasks
    assert set(pids(running).values()).isdisjoint(pids(ready).values())


async def test_restarted_at_annotation_restarts_every_container(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "pair")
    await k.apply(cell_doc(k, "pair", [container(k, "a"), container(k, "b")]))
    before = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(before, Cell)
    old = pids(before)

    await update_cell(
        k, key, metadata={"annotations": {"kukeon.io/restartedAt": "2026-11-29T06:00:00Z"}}
    )

    def restarted(obj: object) -> bool:
        assert isinstance(obj, Cell)
        new = pids(obj)
        return str(obj.status.state) == "Ready" and all(
            new[name] is not None and new[name] != old[name] for name in old
        )

    after = await k.wait_for(Kind.CELL, key, until=restarted, within=30)
    assert isinstance(after, Cell)
    assert [c.restart_count for c in after.status.containers] == [0, 0]  # not policy restarts
    for cid in IDS:
        found = await k.containerd.containers(k.namespace).get(cid)
        assert found.labels["kukeon.io/restarted-at"] == "2026-11-29T06:00:00Z"

    # The same annotation again changes nothing.
    await update_cell(
        k, key, metadata={"annotations": {"kukeon.io/restartedAt": "2026-11-29T06:00:00Z"}}
    )
    latest = await get_cell(k, key)
    assert pids(latest) == pids(after)


async def logged(k: Kukeond, cell: str, words: str, within: float = 15.0) -> str:
    """Container ``a``'s log of ``cell`` once it holds ``words``. Stopped is reported when
    the task has exited; its logger may still be writing what it read last, so a log read
    at that moment can miss the last lines (seen with two test workers on 2 cores)."""
    from kukeon.controllers.cellfiles import CellFiles

    path = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", cell)).log("a")
    text = ""
    async with asyncio.timeout(within):
        # A file another process writes: nothing to await but time.
        while words not in (text := path.read_text() if path.exists() else ""):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return text


SLOW_TO_STOP = (
    "trap 'echo stopping; sleep 2; echo stopped; exit 0' TERM; echo up; while :; do sleep 0.1; done"
)


async def test_a_cells_termination_grace_period_is_its_stop_grace(kukeond: Kukeond) -> None:
    """A container that needs 2 s to stop gets them with terminationGracePeriodSeconds: 5;
    beside it, one under kukeond's grace (1 s in these tests) is killed mid-way."""
    k = kukeond
    await k.hierarchy()
    slow = [container(k, "a", script=SLOW_TO_STOP)]
    await k.apply(cell_doc(k, "patient", slow, terminationGracePeriodSeconds=5))
    await k.apply(cell_doc(k, "hasty", slow))
    for name in ("patient", "hasty"):
        await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")
        # Ready is the task started, not its shell at its trap: a SIGTERM before the trap
        # is ignored by PID 1, and the grace runs out with nothing logged (seen under load).
        await logged(k, name, "up")
        await update_cell(k, cell_key(k, name), spec={"desired_state": DesiredCellState.STOPPED})
    for name in ("patient", "hasty"):
        await k.wait_for(Kind.CELL, cell_key(k, name), state="Stopped", within=30)
    assert "stopping" in await logged(k, "patient", "stopped")
    # Stopped: its process is gone, killed mid-way, before "stopped" (2 s after "stopping")
    assert "stopped" not in await logged(k, "hasty", "stopping")


async def test_a_container_is_stopped_with_its_images_stop_signal(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """An image's StopSignal (postgres: SIGINT, nginx: SIGQUIT) is what stops its container,
    as docker and the CRI runtimes send it; SIGTERM only when the image names none; the
    container's own stopSignal wins over both."""
    from tests.fixtures.containerd import MAKE_TEST_IMAGE

    k = kukeond
    await k.hierarchy()
    archive, name = tmp_path / "usr1.tar", "kukeon.io/test/busybox-usr1:latest"
    built = await asyncio.to_thread(
        subprocess.run,
        [str(MAKE_TEST_IMAGE), str(archive), name],
        env={**os.environ, "STOP_SIGNAL": "SIGUSR1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    controllers = k.daemon.controllers
    assert controllers is not None
    await controllers.images.import_archive(namespace=k.namespace, path=archive)
    script = (
        "trap 'echo got USR1; exit 0' USR1; trap 'echo got TERM; exit 0' TERM; "
        "trap 'echo got INT; exit 0' INT; echo up; while :; do sleep 0.1; done"
    )
    for cell, image, own in (
        ("usr1", name, None),
        ("term", k.image.name, None),
        ("int", name, "int"),  # the container's own, over its image's SIGUSR1
    ):
        spec = container(k, "a", script=script, image=image)
        if own is not None:
            spec["stopSignal"] = own
        await k.apply(cell_doc(k, cell, [spec], terminationGracePeriodSeconds=5))
    for cell in ("usr1", "term", "int"):
        await k.wait_for(Kind.CELL, cell_key(k, cell), state="Ready")
        await logged(k, cell, "up")  # its traps are set (a signal before them is lost)
        await update_cell(k, cell_key(k, cell), spec={"desired_state": DesiredCellState.STOPPED})
    for cell, expected in (("usr1", "got USR1"), ("term", "got TERM"), ("int", "got INT")):
        await k.wait_for(Kind.CELL, cell_key(k, cell), state="Stopped", within=30)
        await logged(k, cell, expected)


DEAF_TO_TERM = "trap '' TERM; while :; do sleep 0.1; done"


async def test_a_deletes_grace_period_wins_and_a_later_one_cuts_a_stop_short(
    kukeond: Kukeond,
) -> None:
    """kubectl's --grace-period: a delete's own grace replaces the cell's for that deletion,
    and a second delete with a shorter one reaches a stop already waiting out a long grace
    (the cells ignore SIGTERM and ask for 60 s: only SIGKILL ends them)."""
    import time

    k = kukeond
    await k.hierarchy()
    deaf = [container(k, "a", script=DEAF_TO_TERM)]
    for name in ("given", "shortened"):
        await k.apply(cell_doc(k, name, deaf, terminationGracePeriodSeconds=60))
    for name in ("given", "shortened"):
        await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")

    started = time.monotonic()
    deleting = await k.registry.delete(Kind.CELL, cell_key(k, "given"), grace_seconds=1)
    assert deleting is not None
    assert deleting.metadata.deletion_grace_period_seconds == 1
    await k.wait_gone(Kind.CELL, cell_key(k, "given"), within=20)
    assert time.monotonic() - started < 20

    await k.registry.delete(Kind.CELL, cell_key(k, "shortened"))
    await asyncio.sleep(2)  # the finalize is waiting out the cell's 60 s by now
    found = await k.registry.get(Kind.CELL, cell_key(k, "shortened"))
    assert found.metadata.deletion_timestamp is not None
    started = time.monotonic()
    lowered = await k.registry.delete(Kind.CELL, cell_key(k, "shortened"), grace_seconds=0)
    assert lowered is None or lowered.metadata.deletion_grace_period_seconds == 0
    # A longer one given later does not lengthen it again.
    raised = await k.registry.delete(Kind.CELL, cell_key(k, "shortened"), grace_seconds=30)
    assert raised is None or raised.metadata.deletion_grace_period_seconds == 0
    await k.wait_gone(Kind.CELL, cell_key(k, "shortened"), within=20)
    assert time.monotonic() - started < 20


RESTARTED_GRACE = 12
"""Longer than kukeond's shutdown grace (10 s), which a stop once spent waiting with it: the
old stop and restart took 3 + 10 + 12 s, past the bound of 12 + 6."""


async def test_a_kukeond_restarted_mid_grace_keeps_the_deadline(kukeond: Kukeond) -> None:
    """A deleted cell that ignores SIGTERM goes when its grace ends, counted from its
    deletion, though kukeond was restarted 3 s into it. Before, the finalize waiting the
    grace held kukeond's stop for its shutdown grace (10 s), was cancelled, and the
    restarted kukeond began the whole grace again: gone after 3 + 10 + RESTARTED_GRACE s."""
    import time

    k = kukeond
    await k.hierarchy()
    deaf = [container(k, "a", script=DEAF_TO_TERM)]
    await k.apply(cell_doc(k, "deaf", deaf, terminationGracePeriodSeconds=RESTARTED_GRACE))
    await k.wait_for(Kind.CELL, cell_key(k, "deaf"), state="Ready")
    started = time.monotonic()
    await k.registry.delete(Kind.CELL, cell_key(k, "deaf"))
    await asyncio.sleep(3)
    await k.daemon.stop()
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    await k.wait_gone(Kind.CELL, cell_key(k, "deaf"), within=60)
    took = time.monotonic() - started
    assert RESTARTED_GRACE <= took < RESTARTED_GRACE + 6, f"gone after {took:.1f}s"


async def test_a_stop_is_no_exit_the_start_reads_back(kukeond: Kukeond) -> None:
    """A container restarted once (on-failure, at its last retry) keeps running; a stop and
    a start run it again at once: the exit before its restart is not read back as a new
    one (it was: the start ended the cell in Error, the container never started again)."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "once")
    script = "trap 'exit 0' TERM; [ -e /ran ] && while :; do sleep 1; done; touch /ran; exit 3"
    app = container(k, "app", script=script, restartPolicy="on-failure", restartMaxRetries=1)
    await k.apply(cell_doc(k, "once", [app]))

    def running_after_a_restart(obj: object) -> bool:
        assert isinstance(obj, Cell)
        return str(obj.status.state) == "Ready" and obj.status.containers[0].restart_count == 1

    before = await k.wait_for(Kind.CELL, key, until=running_after_a_restart, within=30)
    assert isinstance(before, Cell)
    await update_cell(k, key, spec={"desired_state": DesiredCellState.STOPPED})
    await k.wait_for(Kind.CELL, key, state="Stopped", within=30)
    await update_cell(k, key, spec={"desired_state": DesiredCellState.RUNNING})
    after = await k.wait_for(Kind.CELL, key, state="Ready", within=15)
    assert isinstance(after, Cell)
    status = after.status.containers[0]
    assert status.restart_count == 1, status  # a start, not a restart
    assert status.pid not in (None, before.status.containers[0].pid)
