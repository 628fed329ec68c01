"""The realms' usage index after etcd compacted past where its watch would resume (a watch
broken during an outage, etcd compacting meanwhile): the watch is Gone, the index lists
again and counts what is stored, creates and deletes it missed included."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kukeon.api import Kind
from kukeon.store import Gone, Registry
from kukeon.store.realmquota import QuotaLimits, RealmQuotas, Usage

from .objects import cell, space, stack
from .test_realm_quotas import _realm, _until
from .test_watch import private_registry

pytestmark = pytest.mark.integration
__all__ = ["private_registry"]


async def test_a_compacted_watch_relists_and_counts_what_is_stored(
    private_registry: Registry,
) -> None:
    registry = private_registry
    quotas = RealmQuotas(
        client=registry.client,
        config=registry.config,
        layout=registry.layout,
        defaults=QuotaLimits(None, None),
    )
    await quotas._list()  # the index's first list; its watch is not running yet
    await registry.create(_realm("r", {"objects": 100}))
    await registry.create(space("r", "s"))
    await registry.create(stack("r", "s", "st"))
    for index in range(5):
        await registry.create(cell("r", "s", "st", f"c{index}"))
    for index in (0, 3):
        await registry.delete(Kind.CELL, ("r", "s", "st", f"c{index}"))
    await registry.client.compact(await registry.current_revision(), physical=True)

    with pytest.raises(Gone):
        await quotas._follow()  # what the broken watch meets when it resumes
    task = asyncio.create_task(quotas.run())  # lists again, then follows
    try:
        await _until(lambda: quotas.usage("r") == quotas.usage("r")._replace(objects=5))
        assert quotas.limits("r") == QuotaLimits(100, None)
        await registry.delete(Kind.CELL, ("r", "s", "st", "c1"))
        await _until(lambda: quotas.usage("r").objects == 4)
        assert quotas.usage("other") == Usage(0, 0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
