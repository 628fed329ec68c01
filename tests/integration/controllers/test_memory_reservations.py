"""A realm's editor cannot reserve more of a node's memory than the realm may use there.

The scheduler places a cell with memory limits only on a node whose allocatable memory
those limits still fit in. A real kukeond over TLS; the admin holds the editor's realm to
64 MiB (``spec.limits.memoryBytes``, its cgroup's ``memory.max`` on every node). The
editor's cell declares the node's whole allocatable memory as its limit (it cannot use
more than 64 MiB of it); another realm's cell with a 64 MiB limit is placed all the same
and runs.

On the tree before: the editor's cell reserved the whole node, and the other realm's cell
stayed Pending, ``Unschedulable`` ("not enough memory: needs 67108864 bytes, 0 free"),
for as long as it ran.
"""

from __future__ import annotations

import pytest

from kukeon.api import Cell, Kind, Node
from tests.fixtures.kukeond import another_realm
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.controllers.helpers import cell_doc, container

pytestmark = pytest.mark.integration

CAP = 64 * 1024 * 1024


async def test_a_capped_realms_limits_reserve_no_more_than_its_cap(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
) -> None:
    node = tls_kukeond
    k = node.k
    await k.hierarchy()
    own = await k.wait_for(
        Kind.NODE, (k.config.node_name,), until=lambda n: n.status.allocatable.memory_bytes > 0
    )
    assert isinstance(own, Node)
    allocatable = own.status.allocatable.memory_bytes
    assert allocatable > 2 * CAP
    realm = f"/apis/kukeon.io/v1beta1/realms/{k.realm}"
    merge = {"Content-Type": "application/merge-patch+json"}
    async with node.session("admin") as admin:
        patch = {"spec": {"limits": {"memoryBytes": CAP}}}
        async with admin.patch(realm, json=patch, headers=merge) as response:
            assert response.status == 200, await response.text()
    hog = container(k, "app", resources={"memoryLimitBytes": allocatable})
    async with node.session("editor") as editor:
        document = {"apiVersion": "kukeon.io/v1beta1", **cell_doc(k, "hog", [hog])}
        async with editor.post(f"{realm}/spaces/s1/stacks/st1/cells", json=document) as response:
            assert response.status == 201, await response.text()
    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "hog"), state="Ready")
    async with another_realm(k) as other:
        await other.hierarchy()
        box = container(other, "app", resources={"memoryLimitBytes": CAP})
        await other.apply(cell_doc(other, "fits", [box]))
        placed = await other.wait_for(
            Kind.CELL,
            (other.realm, "s1", "st1", "fits"),
            until=lambda c: str(c.status.state) == "Ready" or c.status.reason == "Unschedulable",
        )
        assert isinstance(placed, Cell)
        assert str(placed.status.state) == "Ready", placed.status.message
        # The editor's realm is at its cap on the node: its next limited cell fits as well.
        second = container(k, "app", resources={"memoryLimitBytes": CAP})
        await k.apply(cell_doc(k, "second", [second]))
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "second"), state="Ready")
