"""A container dropped from a cell's spec holds no handler worker through its grace.

Its task is stopped with the cell's grace. That stop once ran inside the cell's pass
(``executor.remove_all``), for the whole grace (an hour at most): two realms dropping a
sidecar that ignores SIGTERM from their cells held every worker, as deleting or restarting
such cells did (``test_realm_workers``, ``test_restart_workers``). Now it is waited out
between passes (``controllers/stopgraces.py``): the pass writes the cell's status and ends
with a ``Requeue`` for the grace left; at the deadline the task is SIGKILLed and the
container removed.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kukeon.api import AnyResource, Cell, Kind
from kukeon.runtime.containerd.errors import TaskNotFoundError
from kukeon.runtime.containerd.tasks import TaskStatus
from tests.fixtures.kukeond import Kukeond, delete_realm_in_teardown
from tests.integration.controllers.helpers import cell_doc, container, container_ids, rewrite
from tests.integration.controllers.test_realm_workers import (  # noqa: F401 - the fixture
    DEAF,
    WORKERS,
    few_workers,
)
from tests.integration.controllers.test_restart_workers import (
    a_new_cell_is_ready_at_once,
    crowded_realms,
    cut_short,
)

pytestmark = pytest.mark.integration

DROPPING = WORKERS + 1
"""The cells each of two realms drops its deaf sidecar from: more than there are workers."""


async def _make_cells(k: Kukeond, names: list[str], grace: int) -> None:
    """Cells of an app (root, heeds SIGTERM) and a sidecar that ignores it, Ready."""
    await k.hierarchy()
    for name in names:
        boxes = [container(k, "app"), container(k, "side", script=DEAF)]
        await k.apply(cell_doc(k, name, boxes, terminationGracePeriodSeconds=grace))
    for name in names:
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", name), state="Ready")


async def _drop_sidecar(k: Kukeond, name: str) -> None:
    def dropped(cell: Cell) -> AnyResource:
        kept = [c for c in cell.spec.containers if c.id != "side"]
        return cell.model_copy(update={"spec": cell.spec.model_copy(update={"containers": kept})})

    await rewrite(k, Kind.CELL, (k.realm, "s1", "st1", name), dropped)


def _shows_only_app(cell: AnyResource) -> bool:
    """The status of the spec without the sidecar is written: the app alone, Ready."""
    assert isinstance(cell, Cell)
    status = cell.status
    return (
        status.observed_generation == cell.metadata.generation
        and [c.id for c in status.containers] == ["app"]
        and status.state == "Ready"
    )


async def _sidecar_runs(k: Kukeond, name: str) -> bool:
    try:
        task = await k.containerd.tasks(k.namespace).get(f"s1_st1_{name}_side")
    except TaskNotFoundError:
        return False
    return task.status == TaskStatus.RUNNING


async def test_two_realms_dropping_deaf_sidecars_hold_no_worker_through_the_grace(
    few_workers: None,  # noqa: F811 - the fixture imported above
    kukeond: Kukeond,
) -> None:
    k = kukeond
    second, third, names = crowded_realms(k, DROPPING)
    try:
        for realm in (k, second):
            await _make_cells(realm, names, grace=3600)
        await third.hierarchy()
        for realm in (k, second):  # as `kukectl apply` of the spec without it
            for name in names:
                await _drop_sidecar(realm, name)
        await asyncio.sleep(2)  # every pass has signalled its sidecar by now
        await a_new_cell_is_ready_at_once(third)
        for realm in (k, second):
            for name in names:  # the status written, the sidecar not cut short
                cell_key = (realm.realm, "s1", "st1", name)
                await realm.wait_for(Kind.CELL, cell_key, until=_shows_only_app, within=10)
                assert await _sidecar_runs(realm, name), name
    finally:
        await cut_short((k, second), names)
        for realm in (second, third):
            await delete_realm_in_teardown(realm)


async def test_a_dropped_deaf_sidecar_is_killed_at_its_deadline(kukeond: Kukeond) -> None:
    """Its task runs until the grace ends, not later than a few seconds after it; then the
    container is gone and the app never stopped."""
    k = kukeond
    grace = 8
    await _make_cells(k, ["short"], grace=grace)
    key = (k.realm, "s1", "st1", "short")
    try:
        app = await k.containerd.tasks(k.namespace).get("s1_st1_short_app")
        await _drop_sidecar(k, "short")
        dropped = time.monotonic()
        await k.wait_for(Kind.CELL, key, until=_shows_only_app, within=grace - 3)
        assert await _sidecar_runs(k, "short")  # its grace is not cut short
        while "s1_st1_short_side" in await container_ids(k):
            assert time.monotonic() - dropped < grace + 6, "the sidecar outlived its deadline"
            await asyncio.sleep(0.2)
        took = time.monotonic() - dropped
        assert took >= grace - 0.5, f"the sidecar was killed after {took:.1f}s"
        assert (await k.containerd.tasks(k.namespace).get("s1_st1_short_app")).pid == app.pid
    finally:
        await cut_short((k,), ["short"])
