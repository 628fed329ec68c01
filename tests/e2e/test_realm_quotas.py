"""A realm's quota on a running kukeond, as an admin and a user meet it through kukectl:
the admin sets it, a create over it is refused with the limit named, a cell set whose
cells do not fit runs what fits and says why in its status, describe shows the use, and
raising the quota lets the set finish."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import CellSet, Kind
from tests.e2e.test_kukectl_cellsets import set_manifest
from tests.fixtures.kukectl import kukectl, parent_manifests
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.e2e


def _quota(k: Kukeond, objects: int) -> bytes:
    return (
        "apiVersion: kukeon.io/v1beta1\nkind: Realm\n"
        f"metadata: {{name: {k.realm}}}\nspec: {{quota: {{objects: {objects}}}}}\n"
    ).encode()


async def _set(k: Kukeond) -> CellSet:
    found = await k.registry.get(Kind.CELL_SET, (k.realm, "web", "site", "web"))
    assert isinstance(found, CellSet)
    return found


async def test_a_realm_quota_through_kukectl(kukeond: Kukeond) -> None:
    k = kukeond
    scope = ["--realm", k.realm, "--space", "web", "--stack", "site"]
    code, _, err = await kukectl(k, "apply", "-f", "-", stdin=parent_manifests(k).encode())
    assert code == 0, err
    code, _, err = await kukectl(k, "image", "import", str(k.image.archive), "--realm", k.realm)
    assert code == 0, err
    # Space, stack, the set and two of its cells: 5 objects.
    code, _, err = await kukectl(k, "apply", "-f", "-", stdin=_quota(k, 4))
    assert code == 0, err
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=set_manifest(k).encode())
    assert code == 0, err

    async with asyncio.timeout(60):
        while True:
            failure = [c for c in (await _set(k)).status.conditions if c.type == "ReplicaFailure"]
            if failure:
                break
            await asyncio.sleep(0.2)
    assert failure[0].reason == "FailedCreate"
    assert f'quota of realm "{k.realm}"' in (failure[0].message or "")
    cells = await k.registry.list(Kind.CELL, (k.realm, "web", "site"))
    assert len(cells.items) == 1

    code, out, err = await kukectl(
        k, "run", "extra", "--image", k.image.name, *scope, "--", "sleep", "60"
    )
    assert code == 1
    assert "spec.quota.objects" in err
    code, out, err = await kukectl(k, "describe", "realm", k.realm)
    assert code == 0, err
    quota = out[out.index("Quota:") :].splitlines()
    assert quota[2].split() == ["objects", "4", "4"]

    code, _, err = await kukectl(k, "apply", "-f", "-", stdin=_quota(k, 5))
    assert code == 0, err
    code, out, err = await kukectl(
        k, "rollout", "status", "cellset/web", "--timeout", "90s", *scope
    )
    assert code == 0, err
    assert not [c for c in (await _set(k)).status.conditions if c.type == "ReplicaFailure"]
