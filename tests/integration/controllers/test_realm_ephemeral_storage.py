"""A realm's `spec.limits.containerEphemeralStorageBytes` (only an admin sets it): every
container of the realm that sets no ephemeral-storage limit gets it, one asking for more is
held to it, and the cell's status shows the limit in force; a container writing past it is
evicted as with its own limit. A real kukeond over TLS, an admin's and an editor's token."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import Cell, ContainerState, Kind
from tests.fixtures.kukeond import Kukeond
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.controllers.helpers import cell_doc, check_storage_every_second, container

pytestmark = pytest.mark.integration

LIMIT = 4 * 1024 * 1024
FILL = "dd if=/dev/zero of=/fill bs=1M count={mib} && sync; exec sleep 1000"
MERGE = {"Content-Type": "application/merge-patch+json"}


def cell(k: Kukeond, name: str, mib: int, **resources: int) -> dict[str, Any]:
    """A cell whose container writes ``mib`` MiB into its root filesystem."""
    extra: dict[str, Any] = {"resources": resources} if resources else {}
    box = container(k, "app", script=FILL.format(mib=mib), restartPolicy="never", **extra)
    document = cell_doc(k, name, [box], terminationGracePeriodSeconds=1)
    return {"apiVersion": "kukeon.io/v1beta1", **document}


async def test_a_realms_default_ephemeral_storage_limit_holds_its_containers(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
) -> None:
    node = tls_kukeond
    k = node.k
    await k.hierarchy()
    check_storage_every_second(k)
    realm_url = f"/apis/kukeon.io/v1beta1/realms/{k.realm}"
    limits = {"spec": {"limits": {"containerEphemeralStorageBytes": LIMIT}}}
    async with node.session("editor") as editor, node.session("admin") as admin:
        async with editor.patch(realm_url, json=limits, headers=MERGE) as response:
            assert response.status == 403, await response.text()
        async with admin.patch(realm_url, json=limits, headers=MERGE) as response:
            assert response.status == 200, await response.text()

        cells = f"{realm_url}/spaces/s1/stacks/st1/cells"
        documents = [
            cell(k, "unset", 16),
            cell(k, "more", 16, ephemeralStorageLimitBytes=1 << 30),
            cell(k, "less", 1, ephemeralStorageLimitBytes=2 * 1024 * 1024),
        ]
        for document in documents:
            async with editor.post(cells, json=document) as response:
                assert response.status == 201, await response.text()

    for name in ("unset", "more"):
        evicted = await k.wait_for(
            Kind.CELL,
            (k.realm, "s1", "st1", name),
            until=lambda c: (
                bool(c.status.containers) and c.status.containers[0].state == ContainerState.FAILED
            ),
            within=60,
        )
        assert isinstance(evicted, Cell)
        status = evicted.status.containers[0]
        assert status.reason == "Evicted", (name, status)
        assert f"over its limit of {LIMIT} bytes" in (status.message or "")
        assert status.ephemeral_storage_limit_bytes == LIMIT
        # The stored spec is the user's: the realm's limit is in the status.
        resources = evicted.spec.containers[0].resources
        assert (resources.ephemeral_storage_limit_bytes if resources else None) != LIMIT

    less = await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "less"), state="Ready")
    assert isinstance(less, Cell)
    assert less.status.containers[0].ephemeral_storage_limit_bytes == 2 * 1024 * 1024
