"""A realm's quota holds against every write of the registry, on a real etcd.

What must hold: no realm holds more objects or bytes than its quota (its own, else the
defaults), whatever the writes' order or concurrency in one kukeond; deletes free room;
another realm is not affected; a new index (a restarted kukeond) counts what is stored;
a malformed realm document in etcd does not stop the index.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kukeon.api import Kind, parse_resource
from kukeon.api.realm import RealmQuota
from kukeon.store import QuotaExceeded, Registry
from kukeon.store.realmquota import QuotaLimits, RealmQuotas

from .objects import cell, space, stack

pytestmark = pytest.mark.integration


def _realm(name: str, quota: dict[str, int] | None = None) -> Any:
    spec: dict[str, Any] = {"quota": quota} if quota is not None else {}
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def _annotated(realm: str, name: str, size: int) -> Any:
    """A cell of ``realm`` with an annotation of ``size`` bytes."""
    big = cell(realm, "s", "st", name)
    return big.model_copy(
        update={"metadata": big.metadata.model_copy(update={"annotations": {"a": "x" * size}})}
    )


NO_DEFAULTS = QuotaLimits(None, None)


@contextlib.asynccontextmanager
async def _quotas(
    registry: Registry, defaults: QuotaLimits = NO_DEFAULTS
) -> AsyncIterator[RealmQuotas]:
    quotas = RealmQuotas(
        client=registry.client, config=registry.config, layout=registry.layout, defaults=defaults
    )
    task = asyncio.create_task(quotas.run())
    try:
        await quotas.wait_synced()
        yield quotas
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(condition: Any) -> None:
    """Poll the index until ``condition`` holds (the watch is what it waits for)."""
    async with asyncio.timeout(5.0):
        while not condition():  # noqa: ASYNC110 (the index has no event to wait on)
            await asyncio.sleep(0.02)


async def _parents(registry: Registry, realm: str, quota: dict[str, int] | None = None) -> None:
    await registry.create(_realm(realm, quota))
    await registry.create(space(realm, "s"))
    await registry.create(stack(realm, "s", "st"))


async def test_a_realm_holds_no_more_objects_than_its_quota(registry: Registry) -> None:
    async with _quotas(registry) as quotas:
        registry.enforce_quotas(quotas)
        await _parents(registry, "r", {"objects": 3})
        await registry.create(cell("r", "s", "st", "c1"))
        with pytest.raises(QuotaExceeded) as refused:
            await registry.create(cell("r", "s", "st", "c2"))
        assert "spec.quota.objects" in str(refused.value)
        assert [cause.field for cause in refused.value.causes] == ["spec.quota.objects"]
        assert quotas.usage("r").objects == 3
        # Another realm is not affected; deleting frees room once the watch shows it.
        await _parents(registry, "other")
        await registry.create(cell("other", "s", "st", "c2"))
        await registry.delete(Kind.CELL, ("r", "s", "st", "c1"))
        await _until(lambda: quotas.usage("r").objects == 2)
        await registry.create(cell("r", "s", "st", "c2"))


async def test_concurrent_creates_never_pass_the_limit(registry: Registry) -> None:
    async with _quotas(registry, QuotaLimits(10, None)) as quotas:
        registry.enforce_quotas(quotas)
        await _parents(registry, "r")
        results = await asyncio.gather(
            *(registry.create(cell("r", "s", "st", f"c{i}")) for i in range(40)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        assert len(refused) == 32, [r for r in results if isinstance(r, BaseException)][:3]
        stored = await registry.list(Kind.CELL, ("r",))
        assert len(stored.items) == 8
        await _until(lambda: quotas.usage("r") == quotas.usage("r")._replace(objects=10))


async def test_bytes_are_counted_and_a_charged_update_that_grows_is_refused(
    registry: Registry,
) -> None:
    async with _quotas(registry) as quotas:
        registry.enforce_quotas(quotas)
        await _parents(registry, "r", {"storageBytes": 6000})
        with pytest.raises(QuotaExceeded) as refused:
            await registry.create(_annotated("r", "big", 8000))
        assert [cause.field for cause in refused.value.causes] == ["spec.quota.storageBytes"]
        created = await registry.create(cell("r", "s", "st", "c"))
        used = quotas.usage("r").storage_bytes
        grown = created.model_copy(
            update={
                "metadata": created.metadata.model_copy(
                    update={"annotations": {"a": "y" * (6000 - used)}}
                )
            }
        )
        with pytest.raises(QuotaExceeded):
            await registry.update(grown, charged=True)
        # kukeond's own writes (bindings, finalizers) are not charged.
        await registry.update(grown)
        await _until(lambda: quotas.usage("r").storage_bytes > 6000)


async def test_a_realms_own_limits_win_over_the_defaults(registry: Registry) -> None:
    async with _quotas(registry, QuotaLimits(3, None)) as quotas:
        registry.enforce_quotas(quotas)
        await _parents(registry, "big", {"objects": 5})
        for name in ("a", "b", "c"):
            await registry.create(cell("big", "s", "st", name))
        await _parents(registry, "small")
        await registry.create(cell("small", "s", "st", "a"))  # its space, stack and cell: 3
        with pytest.raises(QuotaExceeded):
            await registry.create(cell("small", "s", "st", "b"))
        assert quotas.limits("big") == QuotaLimits(5, None)
        assert quotas.limits("small") == QuotaLimits(3, None)


async def test_a_new_index_counts_what_is_stored(registry: Registry) -> None:
    await _parents(registry, "r", {"objects": 4})
    await registry.create(cell("r", "s", "st", "c1"))
    await registry.create(_annotated("r", "c0", 10))
    # A realm document that does not parse is read as setting no limit; the index runs on.
    await registry.client.put(f"{registry.key_prefix}/registry/realms/broken".encode(), b"{no")
    async with _quotas(registry) as quotas:
        assert quotas.usage("r").objects == 4
        assert quotas.limits("r") == QuotaLimits(4, None)
        assert quotas.limits("broken") == QuotaLimits(None, None)
        registry.enforce_quotas(quotas)
        with pytest.raises(QuotaExceeded):
            await registry.create(cell("r", "s", "st", "c2"))
        # The realm's quota changed by an admin applies at once (the watch reads it).
        realm = await registry.get(Kind.REALM, ("r",))
        raised = realm.model_copy(
            update={"spec": realm.spec.model_copy(update={"quota": RealmQuota(objects=5)})}
        )
        await registry.update(raised)
        await _until(lambda: quotas.limits("r").objects == 5)
        await registry.create(cell("r", "s", "st", "c2"))


async def test_a_realm_document_nested_past_the_stack_does_not_stop_the_index(
    registry: Registry,
) -> None:
    """A realm key holding JSON nested 5,000 deep (put by hand, as etcdctl would) raised
    json's RecursionError out of the index's list and watch: the supervised index crashed
    at every restart, so a kukeond started with it never had the realms' usage and refused
    every create ("not known yet"), and a running one stopped following quota changes.
    Now it reads as a realm setting no limit, in the list and in the watch."""
    nested = b"[" * 5000 + b"]" * 5000
    realms = f"{registry.key_prefix}/registry/realms"
    await registry.client.put(f"{realms}/listed".encode(), nested)
    await _parents(registry, "r", {"objects": 2})
    async with _quotas(registry) as quotas:
        assert quotas.limits("listed") == QuotaLimits(None, None)
        registry.enforce_quotas(quotas)
        await registry.client.put(f"{realms}/watched".encode(), nested)
        realm = await registry.get(Kind.REALM, ("r",))
        raised = realm.model_copy(
            update={"spec": realm.spec.model_copy(update={"quota": RealmQuota(objects=3)})}
        )
        await registry.update(raised)  # seen by the watch only after the bad key
        await _until(lambda: quotas.limits("r").objects == 3)
        await registry.create(cell("r", "s", "st", "c1"))
        with pytest.raises(QuotaExceeded):
            await registry.create(cell("r", "s", "st", "c2"))
        assert quotas.limits("watched") == QuotaLimits(None, None)
