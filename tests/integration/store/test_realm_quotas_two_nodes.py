"""Two kukeonds of a fleet on one etcd, each with its own usage index, racing writes into
one realm: the realm's serial key (``store.quotaserial``) holds the quota across them.

Before the serial each index saw the other node's writes only through its watch, and a
burst spread over both stored 16-18 cells where 8 fit. Now a write is stored only if its
node's index had seen every other node's quota-checked write before it, so no burst
passes the limit, and a node alone still fills it exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aetcd import rpc

from kukeon.api import Kind
from kukeon.store import NotFound, QuotaExceeded, Registry
from kukeon.store.keys import range_end
from kukeon.store.quotaserial import serial_root
from kukeon.store.realmquota import RealmQuotas
from tests.fixtures.etcd import EtcdServer

from .objects import cell
from .test_realm_quotas import _parents, _quotas, _until

pytestmark = pytest.mark.integration

LIMIT = {"objects": 10}
ROOM = 8
"""Cells that fit a realm of 10 objects holding its space and stack."""


@contextlib.asynccontextmanager
async def _two_nodes(
    registry: Registry, etcd_server: EtcdServer, prefix: str
) -> AsyncIterator[tuple[Registry, RealmQuotas, Registry, RealmQuotas]]:
    """``registry`` and a second registry on the same etcd and prefix, each checking the
    quotas against its own index, as two kukeonds."""
    other = await Registry.connect(etcd_server.config(key_prefix=prefix))
    try:
        async with _quotas(registry) as mine, _quotas(other) as theirs:
            registry.enforce_quotas(mine)
            other.enforce_quotas(theirs)
            yield registry, mine, other, theirs
    finally:
        with contextlib.suppress(Exception):
            await other.close()


async def _burst(nodes: list[Registry], realm: str, count: int) -> list[Any]:
    results = await asyncio.gather(
        *(nodes[i % len(nodes)].create(cell(realm, "s", "st", f"c{i}")) for i in range(count)),
        return_exceptions=True,
    )
    unexpected = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaExceeded)
    ]
    assert not unexpected, unexpected[:3]
    return results


async def _stored(registry: Registry, realm: str) -> int:
    return len((await registry.list(Kind.CELL, (realm,))).items)


async def _serial(registry: Registry, realm: str) -> bytes | None:
    key = serial_root(registry.layout.registry_root) + realm.encode()
    response = await registry.client.kvstub.Range(
        rpc.RangeRequest(key=key), metadata=registry.client.metadata
    )
    return response.kvs[0].value if response.kvs else None


async def test_two_nodes_racing_never_store_more_than_the_limit(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    async with _two_nodes(registry, etcd_server, etcd_key_prefix) as (a, qa, b, qb):
        for burst in range(20):
            realm = f"r{burst}"
            await _parents(a, realm, LIMIT)
            await _until(lambda realm=realm: qb.limits(realm).objects == 10)
            await _burst([a, b], realm, 40)
            stored = await _stored(a, realm)
            assert 1 <= stored <= ROOM, (burst, stored)
            # A refusal while the other node's write was in flight is conservative only:
            # once both have seen everything, the rest of the room is there.
            await _until(lambda realm=realm: qa.usage(realm) == qb.usage(realm))
            for index in range(40, 40 + ROOM - stored):
                await (a if index % 2 else b).create(cell(realm, "s", "st", f"c{index}"))
            with pytest.raises(QuotaExceeded):
                await b.create(cell(realm, "s", "st", "over"))
            assert await _stored(a, realm) == ROOM
        assert qa.lost_rounds + qb.lost_rounds > 0  # they did race


async def test_a_nodes_own_burst_fills_the_limit_exactly(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    async with _two_nodes(registry, etcd_server, etcd_key_prefix) as (a, qa, b, _qb):
        for burst in range(5):
            realm = f"r{burst}"
            await _parents(b, realm, LIMIT)  # the other node wrote last
            # Once the node has seen that (as a burst some time after it would find it).
            await _until(lambda realm=realm: qa.usage(realm).objects == 2)
            results = await _burst([a], realm, 40)
            assert sum(isinstance(r, QuotaExceeded) for r in results) == 40 - ROOM
            assert await _stored(a, realm) == ROOM
        # Alone in the realm, the node wrote without losing a round to anyone.
        assert qa.lost_rounds == 0


async def test_different_realms_do_not_wait_for_each_other(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    async with _two_nodes(registry, etcd_server, etcd_key_prefix) as (a, qa, b, qb):
        await _parents(a, "one", {"objects": 100})
        await _parents(a, "two", {"objects": 100})
        await _until(lambda: qb.usage("two").objects == 2)  # b has seen a's writes
        # Each node bursts into its own realm at once: no write loses to the other.
        await asyncio.gather(_burst([a], "one", 30), _burst([b], "two", 30))
        assert (await _stored(a, "one"), await _stored(a, "two")) == (30, 30)
        assert qa.lost_rounds == qb.lost_rounds == 0
        # A take-over of one realm's serial held up (this node's writes there wait for
        # it) does not hold up the node's writes in another realm.
        await _parents(b, "three", {"objects": 100})
        await _until(lambda: qa.usage("three").objects == 2)
        async with asyncio.timeout(10), qa.serial_lock("three"):
            waiting = asyncio.create_task(a.create(cell("three", "s", "st", "c")))
            await a.create(cell("one", "s", "st", "late"))
            await asyncio.sleep(0.1)
            assert not waiting.done()
        await waiting


async def test_a_realm_from_before_the_serial_key(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    # Written by a registry that checks nothing: the realm has no serial key.
    await _parents(registry, "old", LIMIT)
    for index in range(3):
        await registry.create(cell("old", "s", "st", f"before{index}"))
    assert await _serial(registry, "old") is None
    async with _two_nodes(registry, etcd_server, etcd_key_prefix) as (a, _qa, b, _qb):
        await _burst([a, b], "old", 30)
        assert await _stored(a, "old") <= ROOM
        assert await _serial(registry, "old") is not None


async def test_cancelled_writes_mid_burst_leave_a_consistent_count(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    rng = random.Random(7)
    async with _two_nodes(registry, etcd_server, etcd_key_prefix) as (a, qa, b, qb):
        for burst in range(5):
            realm = f"r{burst}"
            await _parents(a, realm, LIMIT)
            await _until(lambda realm=realm: qb.limits(realm).objects == 10)
            tasks = [
                asyncio.create_task((a, b)[i % 2].create(cell(realm, "s", "st", f"c{i}")))
                for i in range(40)
            ]
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stored = await _stored(a, realm)
            assert stored <= ROOM
            # Both indexes count what is stored, no write cancelled in flight held over.
            await _until(
                lambda realm=realm, stored=stored: (
                    qa.usage(realm).objects == qb.usage(realm).objects == 2 + stored
                )
            )
            for index in range(40, 40 + ROOM - stored):
                await (a if index % 2 else b).create(cell(realm, "s", "st", f"c{index}"))
            with pytest.raises(QuotaExceeded):
                await a.create(cell(realm, "s", "st", "over"))


async def test_a_deleted_realms_serial_key_goes_with_it(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    async with _two_nodes(registry, etcd_server, etcd_key_prefix) as (a, qa, b, qb):
        await _parents(a, "gone", LIMIT)
        await _until(lambda: qb.limits("gone").objects == 10)
        await _burst([a, b], "gone", 10)
        assert await _serial(a, "gone") is not None
        await a.delete(Kind.REALM, ("gone",), cascade=True)
        async with asyncio.timeout(10):
            with contextlib.suppress(NotFound):
                while True:  # the cascade removes the children, then the realm
                    await a.get(Kind.REALM, ("gone",))
                    await asyncio.sleep(0.05)
        assert await _serial(a, "gone") is None
        # A realm of that name again: both nodes write to it, still within its quota.
        await _parents(b, "gone", LIMIT)
        await _until(lambda: qa.limits("gone").objects == 10)
        await _burst([a, b], "gone", 30)
        assert await _stored(a, "gone") <= ROOM


async def _stored_bytes(registry: Registry, realm: str) -> int:
    """What a realm's quota counts of its keys, read from etcd (key and value bytes)."""
    total = 0
    for plural in ("spaces", "stacks", "cells"):
        start = f"{registry.layout.registry_root}/{plural}/{realm}/".encode()
        response = await registry.client.kvstub.Range(
            rpc.RangeRequest(key=start, range_end=range_end(start)),
            metadata=registry.client.metadata,
        )
        total += sum(len(kv.key) + len(kv.value) for kv in response.kvs)
    return total


async def test_two_nodes_growing_documents_stay_within_the_bytes_limit(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    async with _two_nodes(registry, etcd_server, etcd_key_prefix) as (a, qa, b, qb):
        await _parents(a, "grow", {"storageBytes": 20_000})
        cells = [await a.create(cell("grow", "s", "st", f"c{i}")) for i in range(8)]
        await _until(lambda: qb.usage("grow") == qa.usage("grow"))
        room = 20_000 - await _stored_bytes(a, "grow")

        async def grow(node: Registry, res: Any) -> Any:
            annotations = {"a": "y" * (room // 4)}  # 4 of the 8 fit
            bigger = res.model_copy(
                update={"metadata": res.metadata.model_copy(update={"annotations": annotations})}
            )
            return await node.update(bigger, charged=True)

        results = await asyncio.gather(
            *(grow((a, b)[i % 2], res) for i, res in enumerate(cells)), return_exceptions=True
        )
        unexpected = [
            r for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaExceeded)
        ]
        assert not unexpected, unexpected[:3]
        assert 1 <= sum(not isinstance(r, BaseException) for r in results) <= 4
        assert await _stored_bytes(a, "grow") <= 20_000
