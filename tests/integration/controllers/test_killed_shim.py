"""A `restartPolicy: always` container whose containerd shim is SIGKILLed is restarted once
its backoff has passed, timed from the first time its exit was seen (issue 17, item 2).

The task of a dead shim has no exit time. The controller records the time it first saw the
exit in the container's status at once and keeps it on later passes, so the backoff ends
and the container restarts; before, the timer restarted from "now" at every pass that did
not write the status. Every status the cell passes through is read from a watch, so a
moving timer (two exit times for one exit) fails the test. The `kukeond` fixture deletes
the realm and sweeps the host after the test, passed or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from kukeon.api import AnyResource, Cell, ContainerSecret, ContainerState, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import (
    Followed,
    cell_doc,
    cell_key,
    cell_versions,
    container,
    get_cell,
    update_cell,
)

pytestmark = pytest.mark.integration

BACKOFF_SECONDS = 4
SLACK_SECONDS = 8.0
"""A pass, a task start and the status write on a loaded test machine."""


def _shim_of(pid: int) -> int:
    """The containerd-shim-runc-v2 process whose child is the container's init."""
    with open(f"/proc/{pid}/stat") as stat:
        parent = int(stat.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{parent}/cmdline", "rb") as cmdline:
        assert b"containerd-shim" in cmdline.read()
    return parent


@contextlib.asynccontextmanager
async def exit_times(
    k: Kukeond, key: tuple[str, ...], *, since: int
) -> AsyncIterator[tuple[list[datetime], Followed]]:
    """Each distinct exit time the cell's first container is reported with while it is
    not running (`finishTime`, or `lastState.finishedAt` while it waits for its restart),
    in order, from a watch of the cell's stack."""
    seen: list[datetime] = []

    def note(obj: Cell) -> None:
        first = obj.status.containers[0] if obj.status.containers else None
        if first is None or first.state == ContainerState.RUNNING:
            return
        finished = first.finish_time
        if first.state == ContainerState.WAITING and first.last_state is not None:
            finished = first.last_state.finished_at
        if finished is not None and finished not in seen:
            seen.append(finished)

    async with cell_versions(k, key, note, since=since) as followed:
        yield seen, followed


async def test_a_killed_shim_restarts_within_the_backoff(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "shim")
    app = container(k, "app", restartPolicy="always", restartBackoffSeconds=BACKOFF_SECONDS)
    await k.apply(cell_doc(k, "shim", [app]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(ready, Cell)
    [before] = ready.status.containers
    assert before.pid is not None
    shim = _shim_of(before.pid)

    since = await k.registry.current_revision()
    async with exit_times(k, key, since=since) as (seen, followed):
        killed = time.monotonic()
        os.kill(shim, signal.SIGKILL)

        def restarted(cell: AnyResource) -> bool:
            assert isinstance(cell, Cell)
            first = cell.status.containers[0] if cell.status.containers else None
            return (
                first is not None
                and first.restart_count > before.restart_count
                and first.state == ContainerState.RUNNING
                and first.pid not in (None, before.pid)
            )

        cell = await k.wait_for(
            Kind.CELL, key, until=restarted, within=BACKOFF_SECONDS + SLACK_SECONDS
        )
        took = time.monotonic() - killed
        await followed.caught_up(cell)  # every version up to this one noted
    assert isinstance(cell, Cell)
    [after] = cell.status.containers
    assert after.restart_count == before.restart_count + 1
    assert after.last_state is not None
    assert after.last_state.reason in {"TaskLost", "Error"}
    assert after.last_state.finished_at is not None
    # One exit, one exit time: the timer never moved forward.
    assert seen == [after.last_state.finished_at], seen
    # The restart waited for the backoff after the exit was first seen, not longer.
    assert after.start_time is not None
    waited = (after.start_time - after.last_state.finished_at).total_seconds()
    assert waited >= BACKOFF_SECONDS - 0.1, waited
    assert took <= BACKOFF_SECONDS + SLACK_SECONDS
    # And it stays up.
    await k.wait_for(Kind.CELL, key, state="Ready", within=30)


async def test_a_killed_shim_restarts_while_a_later_container_fails(kukeond: Kukeond) -> None:
    """Every pass fails after the root container (its sidecar's Secret is missing), so no
    pass ends with its report: the root's exit time and its restart are written all the
    same, and the restart happens within the backoff."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "shim2")
    app = container(k, "app", restartPolicy="always", restartBackoffSeconds=BACKOFF_SECONDS)
    await k.apply(cell_doc(k, "shim2", [app, container(k, "side")]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(ready, Cell)
    before = ready.status.containers[0]
    assert before.id == "app"
    assert before.pid is not None

    cell = await get_cell(k, key)
    missing = {"name": "TOKEN", "secretRef": {"name": "absent", "key": "token"}}
    edited = [
        c.model_copy(update={"secrets": [ContainerSecret.model_validate(missing)]})
        if c.id == "side"
        else c
        for c in cell.spec.containers
    ]
    await update_cell(k, key, spec={"containers": edited})

    def secret_missing(obj: AnyResource) -> bool:
        return bool(obj.status.reason == "SecretUnavailable")

    await k.wait_for(Kind.CELL, key, until=secret_missing, within=30)
    shim = _shim_of(before.pid)
    killed = time.monotonic()
    os.kill(shim, signal.SIGKILL)

    def restarted(obj: AnyResource) -> bool:
        assert isinstance(obj, Cell)
        first = obj.status.containers[0] if obj.status.containers else None
        return (
            first is not None
            and first.restart_count > before.restart_count
            and first.pid not in (None, before.pid)
        )

    found = await k.wait_for(
        Kind.CELL, key, until=restarted, within=BACKOFF_SECONDS + SLACK_SECONDS
    )
    took = time.monotonic() - killed
    assert isinstance(found, Cell)
    after = found.status.containers[0]
    assert after.restart_count == before.restart_count + 1
    assert after.last_state is not None
    assert after.last_state.finished_at is not None
    assert after.start_time is not None
    waited = (after.start_time - after.last_state.finished_at).total_seconds()
    assert waited >= BACKOFF_SECONDS - 0.1, waited
    assert took <= BACKOFF_SECONDS + SLACK_SECONDS
    assert found.status.reason == "SecretUnavailable"


def _shim_of_container(namespace: str, name: str) -> int:
    """The containerd-shim-runc-v2 process that holds the (exited) task of `name`."""
    wanted = (b"-namespace", namespace.encode(), b"-id", name.encode())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:
            continue
        if not argv or b"containerd-shim" not in argv[0]:
            continue
        pairs = set(itertools.pairwise(argv))
        if {(wanted[0], wanted[1]), (wanted[2], wanted[3])} <= pairs:
            return int(entry)
    raise AssertionError(f"no shim holds {namespace}/{name}")


async def test_a_shim_killed_during_the_back_off_keeps_why_the_run_ended(
    kukeond: Kukeond,
) -> None:
    """A container waiting out its back-off (`Waiting`, its exit in `lastState`) whose
    shim is SIGKILLed still says how its last run ended, message included (the last line
    it wrote), while it waits and once restarted: the status keeps what the dead shim's
    task can no longer tell."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "shimwait")
    # The first run fails saying why; the next ones run on (the marker is in the
    # container's root filesystem, which a restart keeps).
    script = "if [ -e /ran ]; then exec sleep 600; fi; touch /ran; echo boom; exit 3"
    app = container(k, "app", script=script, restartPolicy="always", restartBackoffSeconds=10)
    await k.apply(cell_doc(k, "shimwait", [app]))

    def waits(obj: AnyResource) -> bool:
        assert isinstance(obj, Cell)
        first = obj.status.containers[0] if obj.status.containers else None
        return first is not None and first.state == ContainerState.WAITING

    found = await k.wait_for(Kind.CELL, key, until=waits, within=60)
    assert isinstance(found, Cell)
    [before] = found.status.containers
    assert before.last_state is not None
    assert (before.last_state.exit_code, before.last_state.message) == (3, "boom"), before
    exit_time = before.last_state.finished_at

    since = await k.registry.current_revision()
    async with exit_messages(k, key, since=since) as (said, followed):
        os.kill(_shim_of_container(k.namespace, "s1_st1_shimwait_app"), signal.SIGKILL)
        await asyncio.sleep(1.0)  # containerd learns its shim is gone
        # A pass while it still waits (an annotation: the container is kept).
        await update_cell(k, key, metadata={"annotations": {"test.kukeon.io/poke": "1"}})
        await asyncio.sleep(2.0)
        cell = await get_cell(k, key)
        [waiting] = cell.status.containers
        assert waiting.state == ContainerState.WAITING, waiting
        assert waiting.last_state is not None
        assert waiting.last_state.message == "boom", waiting
        assert waiting.last_state.finished_at == exit_time, waiting

        def restarted(obj: AnyResource) -> bool:
            assert isinstance(obj, Cell)
            first = obj.status.containers[0] if obj.status.containers else None
            return first is not None and first.restart_count == 1 and bool(first.pid)

        again = await k.wait_for(Kind.CELL, key, until=restarted, within=10 + SLACK_SECONDS)
        await followed.caught_up(again)  # every version up to this one noted
    assert isinstance(again, Cell)
    [after] = again.status.containers
    assert after.last_state is not None
    assert (after.last_state.exit_code, after.last_state.reason) == (3, "Error"), after
    assert after.last_state.message == "boom", after
    assert after.last_state.finished_at == exit_time, after
    # No status written in between forgot it either.
    assert said, said
    assert set(said) == {"boom"}, said


@contextlib.asynccontextmanager
async def exit_messages(
    k: Kukeond, key: tuple[str, ...], *, since: int
) -> AsyncIterator[tuple[list[str | None], Followed]]:
    """The message of the cell's first container's last exit in each status written (its
    `lastState.message`, or its own `message` while it is down and not waiting)."""
    seen: list[str | None] = []

    def note(obj: Cell) -> None:
        first = obj.status.containers[0] if obj.status.containers else None
        if first is None:
            return
        if first.state in (ContainerState.FAILED, ContainerState.STOPPED):
            seen.append(first.message)
        elif first.last_state is not None:
            seen.append(first.last_state.message)

    async with cell_versions(k, key, note, since=since) as followed:
        yield seen, followed
