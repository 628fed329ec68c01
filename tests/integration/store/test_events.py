"""Events in etcd: written with a lease (so they expire), repeats bumped by CAS, watched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aetcd import rpc

from kukeon.api import Event, EventType, InvolvedObject, new_event
from kukeon.store import Registry
from kukeon.store.events import EventChange, EventStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _occurrence(reason: str = "Restarted", at: datetime = T0, realm: str = "r") -> Event:
    return new_event(
        involved=InvolvedObject.of("Cell", (realm, "s", "st", "web"), "u-1"),
        reason=reason,
        message="restarted container app",
        type=EventType.NORMAL,
        at=at,
        node="n1",
    )


def _store(registry: Registry, ttl: int) -> EventStore:
    return EventStore(client=registry.client, config=registry.config, ttl=ttl)


async def _lease_of(registry: Registry, key: bytes) -> tuple[int, int]:
    """The lease of ``key`` and the seconds etcd says it has left."""
    response = await registry.client.kvstub.Range(
        rpc.RangeRequest(key=key), metadata=registry.client.metadata
    )
    lease = int(response.kvs[0].lease)
    alive = await registry.client.leasestub.LeaseTimeToLive(
        rpc.LeaseTimeToLiveRequest(ID=lease), metadata=registry.client.metadata
    )
    return lease, int(alive.TTL)


async def test_an_event_is_put_with_a_lease_of_its_ttl(registry: Registry) -> None:
    store = _store(registry, ttl=600)
    stored = await store.record(_occurrence())
    assert stored.count == 1
    assert stored.metadata.resource_version
    lease, left = await _lease_of(registry, store.key("r", stored.metadata.name))
    assert lease != 0
    # 600 s plus the reuse window (5 % of the TTL, at most a minute), less what has passed.
    assert 590 <= left <= 630
    # A second Event within the reuse window shares the lease.
    other = await store.record(_occurrence(reason="Started"))
    assert (await _lease_of(registry, store.key("r", other.metadata.name)))[0] == lease


async def test_a_repeat_bumps_count_and_last_timestamp(registry: Registry) -> None:
    store = _store(registry, ttl=600)
    first = await store.record(_occurrence())
    second = await store.record(_occurrence(at=T0 + timedelta(seconds=5)), seen=first)
    assert second.metadata.name == first.metadata.name
    assert second.count == 2
    assert second.first_timestamp == T0
    assert second.last_timestamp == T0 + timedelta(seconds=5)
    # A writer with a stale (or no) cached copy reads and bumps what is stored.
    third = await store.record(_occurrence(at=T0 + timedelta(seconds=9)), seen=first)
    fourth = await store.record(_occurrence(at=T0 + timedelta(seconds=10)))
    assert (third.count, fourth.count) == (3, 4)
    listed = await store.list("r")
    assert [e.count for e in listed.items] == [4]
    assert listed.items[0].metadata.resource_version == fourth.metadata.resource_version


async def test_events_expire_with_their_lease(registry: Registry) -> None:
    store = _store(registry, ttl=2)
    stored = await store.record(_occurrence())
    assert await store.get("r", stored.metadata.name) is not None
    deadline = asyncio.get_running_loop().time() + 15
    while await store.get("r", stored.metadata.name) is not None:
        assert asyncio.get_running_loop().time() < deadline, "the Event did not expire"
        await asyncio.sleep(0.25)
    # Expired: the next occurrence starts a new Event at 1, whatever the writer cached.
    again = await store.record(_occurrence(), seen=stored)
    assert again.count == 1


async def test_list_is_per_realm_and_watch_sees_writes_and_expiry(registry: Registry) -> None:
    store = _store(registry, ttl=2)
    await store.record(_occurrence(realm="other"))
    listed = await store.list("r")
    assert listed.items == []
    assert len((await store.list()).items) == 1

    changes: list[EventChange] = []

    async def collect(stream: AsyncIterator[EventChange]) -> None:
        async for change in stream:
            changes.append(change)
            if change.type == "DELETED":
                return

    watcher = asyncio.create_task(
        collect(store.watch("r", resource_version=listed.resource_version))
    )
    first = await store.record(_occurrence())
    await store.record(_occurrence(at=T0 + timedelta(seconds=1)), seen=first)
    async with asyncio.timeout(20):
        await watcher
    assert [c.type for c in changes] == ["ADDED", "MODIFIED", "DELETED"]
    assert [c.event.count for c in changes] == [1, 2, 2]
    assert all(c.event.metadata.realm == "r" for c in changes)


NESTED_PAST_THE_STACK = b"[" * 5000 + b"]" * 5000
"""Valid JSON that Python's json cannot read: nested past its stack (a RecursionError)."""


async def test_an_event_nested_past_the_stack_is_skipped_by_list_and_watch(
    registry: Registry,
) -> None:
    """An Event key holding JSON nested 5,000 deep (put by hand, as etcdctl would): the
    list raised json's RecursionError (``kukectl get events`` of the realm failed for as
    long as the key stayed), the watch too. Now it is skipped as any Event that does not
    read, and the good ones around it are listed and watched."""
    store = _store(registry, ttl=60)
    await store.record(_occurrence(reason="Before"))
    bad = store.scope_prefix("r") + b"nested"
    await registry.client.kvstub.Put(
        rpc.PutRequest(key=bad, value=NESTED_PAST_THE_STACK), metadata=registry.client.metadata
    )
    listed = await store.list("r")
    assert [e.reason for e in listed.items] == ["Before"]
    changes: list[EventChange] = []

    async def collect(stream: AsyncIterator[EventChange]) -> None:
        async for change in stream:
            changes.append(change)
            return

    watcher = asyncio.create_task(
        collect(store.watch("r", resource_version=listed.resource_version))
    )
    await registry.client.kvstub.Put(  # a new version of the bad key, then a good Event
        rpc.PutRequest(key=bad, value=NESTED_PAST_THE_STACK), metadata=registry.client.metadata
    )
    await store.record(_occurrence(reason="After"))
    async with asyncio.timeout(20):
        await watcher
    assert [(c.type, c.event.reason) for c in changes] == [("ADDED", "After")]
