"""A realm's editor cannot stop kukeond converging the other realms by deleting cells that
ignore SIGTERM.

A cell's deletion waits out its stop grace (``terminationGracePeriodSeconds``, up to an
hour) in one of kukeond's 16 handler workers. A real kukeond over TLS: the editor makes 16
cells that ignore SIGTERM, with an hour's grace, and deletes them; another realm's new cell
is then made Ready all the same (one realm holds at most 12 workers:
``framework.Settings.realm_workers``).

On the tree before: the 16 finalizes held every worker, and the other realm's cell stayed
Pending for the hour (seen on a private kukeond).

Two realms together (two colluding editors, or one editor of two realms) held every worker
all the same, until a stop's grace was waited out by no worker (``stopgraces``): a kukeond
with 4 workers, two realms each deleting 5 such cells, and a third realm's new cell (and
one of the deleting realm's own) is Ready within seconds while the deleted cells still run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from kukeon.daemon import app as daemon_app
from kukeon.runtime.containerd.tasks import TaskStatus
from kukeon.store import NotFound
from tests.fixtures.kukeond import Kukeond, another_realm
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.controllers.helpers import cell_doc, container

pytestmark = pytest.mark.integration

STUCK = 16
"""kukeond's handler workers (``Settings.max_workers``)."""
DEAF = "trap '' TERM; while true; do sleep 1; done"


async def test_one_realms_stopping_cells_leave_the_other_realms_workers(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
) -> None:
    node = tls_kukeond
    k = node.k
    await k.hierarchy()
    cells = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    names = [f"deaf{index}" for index in range(STUCK)]
    async with another_realm(k) as other:
        try:
            await other.hierarchy()
            async with node.session("editor") as editor:
                for name in names:
                    box = container(k, "app", script=DEAF)
                    document = cell_doc(k, name, [box], terminationGracePeriodSeconds=3600)
                    async with editor.post(
                        cells, json={"apiVersion": "kukeon.io/v1beta1", **document}
                    ) as response:
                        assert response.status == 201, await response.text()
                for name in names:
                    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", name), state="Ready")
                for name in names:
                    async with editor.delete(f"{cells}/{name}") as response:
                        assert response.status in (200, 202), await response.text()
                await asyncio.sleep(3)  # their finalizes have started waiting out the grace
                await other.apply(cell_doc(other, "later", [container(other, "app")]))
                done = await other.wait_for(
                    Kind.CELL, (other.realm, "s1", "st1", "later"), state="Ready", within=45
                )
                assert isinstance(done, Cell)
                # The editor's own cells are still stopping (nothing was cut short).
                left = await k.registry.get(Kind.CELL, (k.realm, "s1", "st1", names[0]))
                assert left.metadata.deletion_timestamp is not None
        finally:
            async with node.session("editor") as editor:
                for name in names:  # a shorter grace ends the wait (stopgraces)
                    async with editor.delete(
                        f"{cells}/{name}", params={"gracePeriodSeconds": "0"}
                    ) as response:
                        assert response.status in (200, 202, 404), await response.text()
            for name in names:
                await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", name))


WORKERS = 4
"""The handler workers of the next test's kukeond (3 for one realm)."""
DELETED = WORKERS + 1
"""The deaf cells each of two realms deletes: more than there are workers."""


@pytest.fixture
def few_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kukeond asked for after this fixture runs ``WORKERS`` handlers at once."""
    settings = daemon_app.operator_settings

    def fewer(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(settings(*args, **kwargs), max_workers=WORKERS)

    monkeypatch.setattr(daemon_app, "operator_settings", fewer)


async def _make_deaf_cells(k: Kukeond, names: list[str]) -> None:
    await k.hierarchy()
    for name in names:
        box = container(k, "app", script=DEAF)
        await k.apply(cell_doc(k, name, [box], terminationGracePeriodSeconds=3600))
    for name in names:
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", name), state="Ready")


async def _cut_short(k: Kukeond, names: list[str]) -> None:
    """Teardown: the deaf cells deleted with no grace, and gone."""
    for name in names:
        try:
            await k.registry.delete(Kind.CELL, (k.realm, "s1", "st1", name), grace_seconds=0)
        except NotFound:
            continue
    for name in names:
        await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", name))


async def test_two_realms_deleting_deaf_cells_hold_no_worker_through_the_grace(
    few_workers: None, kukeond: Kukeond
) -> None:
    k = kukeond
    operator = k.daemon.operator
    assert operator is not None
    assert operator.settings.max_workers == WORKERS
    names = [f"deaf{index}" for index in range(DELETED)]
    async with another_realm(k, "b") as second, another_realm(k, "c") as third:
        try:
            for realm in (k, second):
                await _make_deaf_cells(realm, names)
            await third.hierarchy()
            for realm in (k, second):
                for name in names:
                    await realm.registry.delete(Kind.CELL, (realm.realm, "s1", "st1", name))
            await asyncio.sleep(2)  # every deletion has signalled its cell by now
            started = time.monotonic()
            for realm in (third, k):  # another realm's new cell, and the deleting realm's own
                await realm.apply(cell_doc(realm, "later", [container(realm, "app")]))
            for realm in (third, k):
                key = (realm.realm, "s1", "st1", "later")
                await realm.wait_for(Kind.CELL, key, state="Ready", within=20)
            took = time.monotonic() - started
            assert took < 20, f"the new cells took {took:.1f}s"
            # Nothing was cut short: the deleted cells are still there, their tasks running.
            tasks = k.containerd.tasks(k.namespace)
            for name in names:
                left = await k.registry.get(Kind.CELL, (k.realm, "s1", "st1", name))
                assert left.metadata.deletion_timestamp is not None
                assert (await tasks.get(f"s1_st1_{name}_app")).status == TaskStatus.RUNNING
        finally:
            for realm in (k, second):
                await _cut_short(realm, names)
