"""Failover on a 3-member cluster: the leader dies while a writer and a watcher run."""

from __future__ import annotations

import asyncio
import collections

import pytest

from kukeon.api import Kind
from kukeon.store import Registry, Unavailable, WatchEvent
from tests.fixtures.etcd import EtcdCluster

from .objects import realm

pytestmark = pytest.mark.integration


async def test_leader_killed_under_writer_and_watcher(etcd_cluster: EtcdCluster) -> None:
    # The leader's endpoint first: gRPC's pick_first connects there, so the kill takes
    # both the raft leader and the registry's own connection.
    leader = await etcd_cluster.leader()
    endpoints = etcd_cluster.endpoints
    endpoints.insert(0, endpoints.pop(leader))
    config = etcd_cluster.config(endpoints=endpoints, request_timeout=2.0, retry_timeout=30.0)
    async with await Registry.connect(config) as registry:
        start = await registry.current_revision()
        acknowledged: list[str] = []
        unknown: list[str] = []
        seen: list[WatchEvent] = []
        sixty_acknowledged = asyncio.Event()

        async def writer() -> None:
            for index in range(300):
                name = f"w{index:03d}"
                try:
                    await registry.create(realm(name))
                except Unavailable:
                    unknown.append(name)
                else:
                    acknowledged.append(name)
                    if len(acknowledged) == 60:
                        sixty_acknowledged.set()
                await asyncio.sleep(0.005)

        async def watcher() -> None:
            async for event in registry.watch(Kind.REALM, resource_version=start):
                seen.append(event)

        watching = asyncio.create_task(watcher())
        writing = asyncio.create_task(writer())
        await asyncio.wait_for(sixty_acknowledged.wait(), 60)
        assert await etcd_cluster.leader() == leader
        await etcd_cluster.kill(leader)
        await asyncio.wait_for(writing, 120)
        new_leader = await etcd_cluster.leader()
        assert new_leader != leader

        final = await registry.list(Kind.REALM)
        deadline = asyncio.get_running_loop().time() + 30
        while not seen or seen[-1].revision < final.resource_version:
            assert asyncio.get_running_loop().time() < deadline, "watcher fell behind"
            await asyncio.sleep(0.05)
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching

    present = {item.metadata.name for item in final.items}
    assert set(acknowledged) <= present
    assert present <= set(acknowledged) | set(unknown)
    added = collections.Counter(e.object.metadata.name for e in seen if e.type == "ADDED")
    assert all(added[name] == 1 for name in acknowledged)
    assert set(added) == present
    revisions = [event.revision for event in seen]
    assert revisions == sorted(set(revisions)), "an event was repeated or reordered"
    assert len(acknowledged) > 200

    # The killed member comes back, catches up, and serves everything on its own.
    await etcd_cluster.restart(leader)
    alone = etcd_cluster.config(endpoints=[etcd_cluster.endpoints[leader]])
    async with await Registry.connect(alone) as registry:
        again = await registry.list(Kind.REALM)
    assert {item.metadata.name for item in again.items} == present
    print(f"acknowledged {len(acknowledged)}, outcome unknown {len(unknown)}, events {len(seen)}")
