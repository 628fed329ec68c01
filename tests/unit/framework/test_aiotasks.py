"""Supervisor: a crashed loop is logged once, counted, reported down and restarted with
backoff; a stopped one is never restarted."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from kukeon.framework import Supervisor, TasksDown, metrics_for


def _restarts(registry: CollectorRegistry, task: str) -> float:
    value = registry.get_sample_value("kukeon_task_restarts_total", {"task": task})
    return 0.0 if value is None else value


def _supervisor(registry: CollectorRegistry, **kwargs: float) -> Supervisor:
    settings = {"backoff_initial": 0.05, "backoff_max": 0.2, "recovered_after": 0.1, **kwargs}
    return Supervisor(metrics=metrics_for(registry), **settings)


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    for _ in range(int(within / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not true within {within}s")


def test_the_delay_doubles_up_to_the_cap() -> None:
    supervisor = Supervisor(backoff_initial=0.5, backoff_max=30.0)
    assert [supervisor.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert supervisor.delay(7) == 30.0
    assert supervisor.delay(10_000) == 30.0
    with pytest.raises(ValueError, match="backoff"):
        Supervisor(backoff_initial=2.0, backoff_max=1.0)


async def test_a_crash_is_restarted_counted_and_reported_until_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    supervisor = _supervisor(registry)
    runs: list[float] = []
    crash = asyncio.Event()
    crash.set()

    async def loop() -> None:
        runs.append(asyncio.get_running_loop().time())
        if crash.is_set():
            crash.clear()
            raise KeyError("metadata")
        await asyncio.Event().wait()

    check = supervisor.readiness("controllers")
    with caplog.at_level(logging.ERROR, logger="kukeon.framework.aiotasks"):
        task = supervisor.start("kukeon-watch Realm", loop)
        await _until(lambda: task.restarts == 1)
        assert not task.up
        with pytest.raises(TasksDown, match="kukeon-watch Realm down after 1 crash"):
            check()
        await _until(lambda: len(runs) == 2)
        assert runs[1] - runs[0] >= 0.05  # the backoff's first step
        assert not task.up  # restarted, not yet alive for recovered_after
        await _until(lambda: task.up)
        assert check()
    assert _restarts(registry, "kukeon-watch Realm") == 1
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 1
    assert crashes[0].exc_info is not None  # the traceback, once
    await supervisor.stop()
    assert task.task.done()


async def test_the_same_crash_in_a_row_is_one_line_without_traceback_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    supervisor = _supervisor(registry, backoff_initial=0.02, backoff_max=0.08)
    starts: list[float] = []

    async def loop() -> None:
        starts.append(asyncio.get_running_loop().time())
        raise RuntimeError("always")

    with caplog.at_level(logging.ERROR, logger="kukeon.framework.aiotasks"):
        task = supervisor.start("kukeon-crasher", loop)
        await _until(lambda: len(starts) >= 6)
        await supervisor.stop([task])
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.02
    assert gaps[1] >= 0.04
    assert all(gap >= 0.08 for gap in gaps[2:])  # capped, never shorter
    assert all(gap < 1.0 for gap in gaps)
    records = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert records[0].exc_info is not None
    assert all(r.exc_info is None for r in records[1:])
    assert "again" in records[1].getMessage()
    assert _restarts(registry, "kukeon-crasher") == len(records)
    assert not supervisor.down()  # stopped: nobody's readiness concern any more


async def test_a_loop_that_returns_is_a_crash_unless_finishable() -> None:
    registry = CollectorRegistry()
    supervisor = _supervisor(registry)
    calls = 0

    async def returns() -> None:
        nonlocal calls
        calls += 1

    task = supervisor.start("kukeon-returns", returns)
    await _until(lambda: calls >= 2)
    assert isinstance(task.last_error, RuntimeError)
    finished = supervisor.start("kukeon-once", returns, finishable=True)
    await _until(lambda: finished.task.done())
    assert finished.finished
    assert finished.up
    await supervisor.stop()
    assert _restarts(registry, "kukeon-once") == 0


async def test_stop_cancels_cleanly_and_never_restarts() -> None:
    registry = CollectorRegistry()
    supervisor = _supervisor(registry)
    started = 0
    cancelled = asyncio.Event()

    async def loop() -> None:
        nonlocal started
        started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = supervisor.start("kukeon-loop", loop)
    await _until(lambda: started == 1)
    await supervisor.stop()
    assert cancelled.is_set()
    assert task.task.cancelled()
    await asyncio.sleep(0.3)  # several backoff steps: nothing comes back
    assert started == 1
    assert _restarts(registry, "kukeon-loop") == 0
    assert supervisor.tasks == []


async def test_stop_during_the_backoff_does_not_restart() -> None:
    registry = CollectorRegistry()
    supervisor = _supervisor(registry, backoff_initial=0.2, backoff_max=0.2)
    started = 0

    async def loop() -> None:
        nonlocal started
        started += 1
        raise RuntimeError("down")

    task = supervisor.start("kukeon-backoff", loop)
    await _until(lambda: task.restarts == 1)
    await task.stop()
    await asyncio.sleep(0.4)
    assert started == 1


async def test_a_loop_that_swallows_its_cancellation_is_not_restarted() -> None:
    supervisor = _supervisor(CollectorRegistry())
    started = 0

    async def stubborn() -> None:
        nonlocal started
        started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return  # wrong, but it must not come back

    supervisor.start("kukeon-stubborn", stubborn)
    await _until(lambda: started == 1)
    await supervisor.stop()
    await asyncio.sleep(0.2)
    assert started == 1


async def test_readiness_is_per_component() -> None:
    supervisor = _supervisor(CollectorRegistry(), backoff_initial=5.0, backoff_max=5.0)

    async def crashes() -> None:
        raise OSError("containerd gone")

    async def runs() -> None:
        await asyncio.Event().wait()

    supervisor.start("kukeon-node-heartbeat", runs, component="fleet")
    task = supervisor.start("kukeon-containerd-events", crashes)
    await _until(lambda: task.restarts == 1)
    assert supervisor.readiness("fleet")()
    with pytest.raises(TasksDown, match="containerd gone"):
        supervisor.readiness("controllers")()
    assert [t.name for t in supervisor.down()] == ["kukeon-containerd-events"]
    await supervisor.stop()
