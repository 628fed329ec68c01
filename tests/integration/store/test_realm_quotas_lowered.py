"""A realm's quota lowered below what it uses (an admin tightening a noisy tenant): its
objects keep working. Nothing new fits until it is under the limit again, but deletes pass,
an update that shrinks a document passes, one that keeps its size passes (kukeond's own
and the user's alike), and only growth is refused."""

from __future__ import annotations

import pytest

from kukeon.api import AnyResource, Kind
from kukeon.api.realm import RealmQuota
from kukeon.store import QuotaExceeded, Registry

from .objects import cell
from .test_realm_quotas import _annotated, _parents, _quotas, _until

pytestmark = pytest.mark.integration


def _with_annotation(obj: AnyResource, size: int) -> AnyResource:
    meta = obj.metadata.model_copy(update={"annotations": {"a": "x" * size}})
    return obj.model_copy(update={"metadata": meta})


async def test_a_quota_lowered_below_usage_refuses_only_growth(registry: Registry) -> None:
    async with _quotas(registry) as quotas:
        registry.enforce_quotas(quotas)
        await _parents(registry, "r", {"objects": 10, "storageBytes": 100_000})
        big = await registry.create(_annotated("r", "big", 5000))
        await registry.create(cell("r", "s", "st", "c1"))
        used = quotas.usage("r")
        realm = await registry.get(Kind.REALM, ("r",))
        lowered = RealmQuota(objects=2, storage_bytes=100)  # far below
        await registry.update(
            realm.model_copy(update={"spec": realm.spec.model_copy(update={"quota": lowered})})
        )
        await _until(lambda: quotas.limits("r").objects == 2)

        with pytest.raises(QuotaExceeded):
            await registry.create(cell("r", "s", "st", "c2"))
        same = await registry.update(_with_annotation(big, 5000), charged=True)
        shrunk = await registry.update(_with_annotation(same, 10), charged=True)
        with pytest.raises(QuotaExceeded) as grown:
            await registry.update(_with_annotation(shrunk, 20), charged=True)
        assert [c.field for c in grown.value.causes] == ["spec.quota.storageBytes"]
        await registry.delete(Kind.CELL, ("r", "s", "st", "c1"))
        await registry.delete(Kind.CELL, ("r", "s", "st", "big"))
        await _until(lambda: quotas.usage("r").objects == 2)
        assert quotas.usage("r").storage_bytes < used.storage_bytes
