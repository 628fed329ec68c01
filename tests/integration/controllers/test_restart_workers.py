"""Restarting cells that ignore SIGTERM holds no handler worker through their grace.

``kukectl restart`` replaces a cell's containers: the old task is stopped with the cell's
grace first. That stop once ran inside the cell's pass, for the whole grace (an hour at
most): two realms restarting such cells held every worker, as their deletion did
(``test_realm_workers``). Now the old task's stop is waited out between passes
(``controllers/stopgraces.py``): a kukeond with 4 workers, two realms each restarting 5
such cells, and a third realm's new cell is Ready within seconds, the old tasks still
running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time

import pytest

from kukeon.api import Kind
from kukeon.runtime.containerd.tasks import TaskStatus
from kukeon.store import NotFound
from tests.fixtures.kukeond import Kukeond, delete_realm_in_teardown
from tests.integration.controllers.helpers import cell_doc, container, update_cell
from tests.integration.controllers.test_realm_workers import (  # noqa: F401 - the fixture
    WORKERS,
    _make_deaf_cells,
    few_workers,
)

pytestmark = pytest.mark.integration

RESTARTED = WORKERS + 1
"""The deaf cells each of two realms restarts: more than there are workers."""


def crowded_realms(k: Kukeond, count: int) -> tuple[Kukeond, Kukeond, list[str]]:
    """For a test on ``k``'s kukeond with ``WORKERS`` workers: a second realm (beside
    ``k``'s, each with ``count`` deaf cells, by the names given) and a third."""
    operator = k.daemon.operator
    assert operator is not None
    assert operator.settings.max_workers == WORKERS
    second = dataclasses.replace(k, realm=f"b{secrets.token_hex(3)}")
    third = dataclasses.replace(k, realm=f"c{secrets.token_hex(3)}")
    return second, third, [f"deaf{index}" for index in range(count)]


async def a_new_cell_is_ready_at_once(third: Kukeond) -> None:
    """A new cell of the realm ``third`` is Ready within 20 s."""
    started = time.monotonic()
    await third.apply(cell_doc(third, "later", [container(third, "app")]))
    key = (third.realm, "s1", "st1", "later")
    await third.wait_for(Kind.CELL, key, state="Ready", within=20)
    took = time.monotonic() - started
    assert took < 20, f"the new cell took {took:.1f}s"


async def cut_short(realms: tuple[Kukeond, ...], names: list[str]) -> None:
    """Teardown: the realms' cells of ``names`` deleted with no grace, and gone."""
    for realm in realms:
        for name in names:
            key = (realm.realm, "s1", "st1", name)
            with contextlib.suppress(NotFound):
                await realm.registry.delete(Kind.CELL, key, grace_seconds=0)
        for name in names:
            await realm.wait_gone(Kind.CELL, (realm.realm, "s1", "st1", name))


async def test_two_realms_restarting_deaf_cells_hold_no_worker_through_the_grace(
    few_workers: None,  # noqa: F811 - the fixture imported above
    kukeond: Kukeond,
) -> None:
    k = kukeond
    second, third, names = crowded_realms(k, RESTARTED)
    try:
        for realm in (k, second):
            await _make_deaf_cells(realm, names)
        await third.hierarchy()
        asked = {"annotations": {"kukeon.io/restartedAt": "2026-12-06T20:00:00Z"}}
        for realm in (k, second):  # as `kukectl restart` asks
            for name in names:
                await update_cell(realm, (realm.realm, "s1", "st1", name), metadata=asked)
        await asyncio.sleep(2)  # every restart has signalled its old task by now
        await a_new_cell_is_ready_at_once(third)
        # Nothing was cut short: the old tasks still run, in the old containers.
        for realm in (k, second):
            tasks = realm.containerd.tasks(realm.namespace)
            for name in names:
                assert (await tasks.get(f"s1_st1_{name}_app")).status == TaskStatus.RUNNING
    finally:
        await cut_short((k, second), names)
        for realm in (second, third):
            await delete_realm_in_teardown(realm)
