"""Restart policies: on-failure gives up after restartMaxRetries, always keeps going, and the
default back-off is Kubernetes' CrashLoopBackOff (at once, then 10 s doubling)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable

import pytest

from kukeon.api import AnyResource, Cell, ContainerState, ContainerStatus, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import Followed, cell_doc, cell_key, cell_versions, container, get_cell

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def watched_states(
    k: Kukeond, key: tuple[str, ...], *, since: int
) -> AsyncIterator[list[str]]:
    """Every state the cell's document passes through, in order, read from the registry."""
    seen: list[str] = []

    def note(obj: Cell) -> None:
        state = str(obj.status.state)
        if not seen or seen[-1] != state:
            seen.append(state)

    async with cell_versions(k, key, note, since=since):
        yield seen


async def test_on_failure_gives_up_after_max_retries(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "flaky")
    since = await k.registry.current_revision()
    async with watched_states(k, key, since=since) as seen:
        await k.apply(
            cell_doc(
                k,
                "flaky",
                [
                    container(
                        k,
                        "job",
                        script="exit 1",
                        restartPolicy="on-failure",
                        restartMaxRetries=2,
                        restartBackoffSeconds=1,
                    )
                ],
            )
        )
        cell = await k.wait_for(Kind.CELL, key, state="Error", within=30)
        # Nothing more happens once the retries are spent.
        await asyncio.sleep(2.5)
    assert isinstance(cell, Cell)
    latest = await get_cell(k, key)
    assert str(latest.status.state) == "Error"
    [job] = latest.status.containers
    assert job.restart_count == 2
    assert job.exit_code == 1
    assert "Degraded" in seen, seen
    assert seen[-1] == "Error", seen


async def test_always_restarts_after_a_clean_exit(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "loop")
    await k.apply(
        cell_doc(
            k,
            "loop",
            [
                container(
                    k,
                    "tick",
                    script="sleep 0.2; exit 0",
                    restartPolicy="always",
                    restartBackoffSeconds=1,
                )
            ],
        )
    )

    def restarts(at_least: int) -> object:
        def check(obj: object) -> bool:
            assert isinstance(obj, Cell)
            return (
                bool(obj.status.containers) and obj.status.containers[0].restart_count >= at_least
            )

        return check

    await k.wait_for(Kind.CELL, key, until=restarts(1), within=30)  # type: ignore[arg-type]
    # Within 20 s: the default back-off (at once, 10 s, 20 s) would need over 30 s.
    cell = await k.wait_for(Kind.CELL, key, until=restarts(3), within=20)  # type: ignore[arg-type]
    assert isinstance(cell, Cell)
    assert str(cell.status.state) in ("Ready", "Degraded")
    assert cell.status.ready_observed


def _container(check: Callable[[ContainerStatus], bool]) -> Callable[[AnyResource], bool]:
    def until(obj: AnyResource) -> bool:
        assert isinstance(obj, Cell)
        return bool(obj.status.containers) and check(obj.status.containers[0])

    return until


def _pause(status: ContainerStatus) -> float:
    """Seconds from the previous instance's exit to this one's start (a status of its run:
    once it exits again and waits, ``lastState`` is that newer exit)."""
    assert status.state == ContainerState.RUNNING, status
    assert status.last_state is not None
    assert status.last_state.finished_at is not None
    assert status.start_time is not None
    return (status.start_time - status.last_state.finished_at).total_seconds()


@contextlib.asynccontextmanager
async def runs(
    k: Kukeond, key: tuple[str, ...], *, since: int
) -> AsyncIterator[tuple[list[ContainerStatus], Followed]]:
    """The first container's status as first written for each of its runs (Ready, with a
    pid), read from every revision of the cell: a run of `exit 1` is over before a poll
    would see it."""
    seen: list[ContainerStatus] = []

    def note(obj: Cell) -> None:
        first = obj.status.containers[0] if obj.status.containers else None
        if first is None or first.state != ContainerState.RUNNING or not first.pid:
            return
        if not seen or seen[-1].pid != first.pid:
            seen.append(first)

    async with cell_versions(k, key, note, since=since) as followed:
        yield seen, followed


async def test_the_default_backoff_restarts_at_once_then_after_ten_seconds(
    kukeond: Kukeond,
) -> None:
    """No restartBackoffSeconds: a container that fails at once is restarted without the
    old fixed 30 s, and the next restart waits 10 s (its status message says so)."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "crashloop")
    since = await k.registry.current_revision()
    async with runs(k, key, since=since) as (started, followed):
        await k.apply(
            cell_doc(k, "crashloop", [container(k, "app", script="exit 1", restartPolicy="always")])
        )
        await _default_backoff(k, key, started, followed)


async def _default_backoff(
    k: Kukeond, key: tuple[str, ...], started: list[ContainerStatus], followed: Followed
) -> None:
    first = await k.wait_for(
        Kind.CELL, key, until=_container(lambda c: c.restart_count >= 1), within=30
    )
    assert isinstance(first, Cell)
    await followed.caught_up(first)  # the read may come before the watch delivers it
    [once] = [run for run in started if run.restart_count == 1]
    assert _pause(once) < 5, once  # at once: one reconcile, not 30 s

    # The restarted task fails at once too: the second restart waits 10 s, and says so.
    waiting = await k.wait_for(
        Kind.CELL,
        key,
        until=_container(lambda c: "back-off" in (c.message or "")),
        within=30,  # a pass and its status write: seconds at load
    )
    assert isinstance(waiting, Cell)
    said = re.search(r"back-off ([0-9]+)s", waiting.status.containers[0].message or "")
    assert said is not None
    assert said.group(1) == "10", said.group(0)

    second = await k.wait_for(
        Kind.CELL, key, until=_container(lambda c: c.restart_count >= 2), within=25
    )
    assert isinstance(second, Cell)
    await followed.caught_up(second)
    [twice] = [run for run in started if run.restart_count == 2]
    assert twice.backoff_restarts == 2
    assert 10 <= _pause(twice) < 16, twice
