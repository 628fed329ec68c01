"""Restart policies: on-failure gives up after restartMaxRetries, always keeps going."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, get_cell

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def watched_states(
    k: Kukeond, key: tuple[str, ...], *, since: int
) -> AsyncIterator[list[str]]:
    """Every state the cell's document passes through, in order, read from the registry."""
    seen: list[str] = []

    async def follow() -> None:
        async for event in k.registry.watch(Kind.CELL, key[:3], resource_version=since):
            if event.object.metadata.name == key[3]:
                state = str(event.object.status.state)
                if not seen or seen[-1] != state:
                    seen.append(state)

    task = asyncio.create_task(follow())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


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
    cell = await k.wait_for(Kind.CELL, key, until=restarts(3), within=30)  # type: ignore[arg-type]
    assert isinstance(cell, Cell)
    assert str(cell.status.state) in ("Ready", "Degraded")
    assert cell.status.ready_observed
