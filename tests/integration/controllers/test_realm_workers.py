"""A realm's editor cannot stop kukeond converging the other realms by deleting cells that
ignore SIGTERM.

A cell's deletion waits out its stop grace (``terminationGracePeriodSeconds``, up to an
hour) in one of kukeond's 16 handler workers. A real kukeond over TLS: the editor makes 16
cells that ignore SIGTERM, with an hour's grace, and deletes them; another realm's new cell
is then made Ready all the same (one realm holds at most 12 workers:
``framework.Settings.realm_workers``).

On the tree before: the 16 finalizes held every worker, and the other realm's cell stayed
Pending for the hour (seen on a private kukeond).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import delete_realm_in_teardown
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
    other = dataclasses.replace(k, realm=f"o{secrets.token_hex(3)}")
    cells = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    names = [f"deaf{index}" for index in range(STUCK)]
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
        await delete_realm_in_teardown(other)
