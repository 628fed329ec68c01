"""The scheduler leader against real etcd leases: a node's heartbeat lease missing from one
read (its kukeond taking a new one) drops no deleted cell's finalizer; a node silent for
the grace does; the leader's own node is not gone while its kukeond holds its lease."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aetcd import rpc
from prometheus_client import CollectorRegistry

from kukeon.api import Cell, Kind, Node, NodeSpec, ObjectMeta
from kukeon.controllers.scheduler import CELL_FINALIZER, Scheduler, alive_nodes, heartbeat_prefix
from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.node import start_fleet
from kukeon.framework import LeaseSession, Operator
from kukeon.store import NotFound, Registry
from tests.integration.framework.helpers import fast_settings
from tests.integration.store.objects import cell, realm, space, stack

pytestmark = pytest.mark.integration

GRACE = 3.0


async def take_lease(registry: Registry, node: str) -> LeaseSession:
    """What a node's heartbeat loop does (``NodeAgent._new_lease``): a lease, its key."""
    session = LeaseSession(client=registry.client, ttl=5, refresh_interval=1.0, name=node)
    await session.start()
    key = (heartbeat_prefix(registry.key_prefix) + node).encode()
    await registry.client.kvstub.Put(
        rpc.PutRequest(key=key, value=b"{}", lease=session.lease_id),
        timeout=5.0,
        metadata=registry.client.metadata,
    )
    return session


async def still_held(registry: Registry) -> bool:
    try:
        found = await registry.get(Kind.CELL, ("r", "s", "st", "leaving"))
    except NotFound:
        return False
    assert isinstance(found, Cell)
    return CELL_FINALIZER in found.metadata.finalizers


async def a_cell_held_by(registry: Registry, node: str) -> None:
    """r/s/st/leaving on ``node``, its node's finalizer on it (not deleted yet)."""
    for parent in (realm("r"), space("r", "s"), stack("r", "s", "st")):
        await registry.create(parent)
    leaving = cell("r", "s", "st", "leaving")
    assert isinstance(leaving, Cell)
    leaving.spec.node_name = node
    await registry.create(leaving)
    await registry.add_finalizer(Kind.CELL, ("r", "s", "st", "leaving"), CELL_FINALIZER)


async def test_a_lease_being_taken_again_drops_no_finalizer(registry: Registry) -> None:
    await registry.create(Node(metadata=ObjectMeta(name="b"), spec=NodeSpec()))
    await a_cell_held_by(registry, "b")
    lease = await take_lease(registry, "b")
    leader = Scheduler(
        registry=registry, node_name="leader", node_lost_timeout=60, heartbeat_grace=GRACE
    )
    try:
        await registry.delete(Kind.CELL, ("r", "s", "st", "leaving"))
        leader.listen_afresh()
        await leader.run_pass()  # b heard: its kukeond tears the cell down
        # b's kukeond found its lease lost and takes a new one: revoked, key gone meanwhile.
        await lease.close(revoke=True)
        await leader.run_pass()
        assert await still_held(registry), "dropped while b takes a new lease"
        lease = await take_lease(registry, "b")
        await asyncio.sleep(GRACE + 0.5)
        await leader.run_pass()
        assert await still_held(registry), "b's lease is alive"
        # b is gone for good: the finalizer goes once the leader has not heard it for GRACE.
        await lease.close(revoke=True)
        await leader.run_pass()
        assert await still_held(registry)
        await asyncio.sleep(GRACE + 0.2)
        await leader.run_pass()
        assert not await still_held(registry)
        assert leader.stats.released_cells == 1
    finally:
        await lease.close(revoke=True)


async def test_the_leaders_own_node_is_not_gone_while_its_kukeond_holds_the_lease(
    registry: Registry, tmp_path: Path
) -> None:
    """The leader's own heartbeat key missing from its reads (etcd recovering) while its
    node agent holds the lease: the cell on it keeps its finalizer past the grace. Nothing
    here finalizes cells (no cell controller), so only the scheduler could drop it."""
    await a_cell_held_by(registry, "own")
    op = Operator(
        registry, settings=fast_settings(node_name="own"), collector_registry=CollectorRegistry()
    )
    config = DaemonConfig(node_name="own", node_lease_ttl=5, state_dir=tmp_path)
    fleet = await start_fleet(op, registry=registry, config=config, containerd=None)
    try:
        leader = fleet.scheduler
        leader.heartbeats.grace = GRACE
        assert leader.heartbeats.holds_own_lease()
        leader.listen_afresh()
        await leader.run_pass()  # its own node heard
        await registry.delete(Kind.CELL, ("r", "s", "st", "leaving"))
        await registry.client.kvstub.DeleteRange(
            rpc.DeleteRangeRequest(key=fleet.agent.heartbeat_key),
            timeout=5.0,
            metadata=registry.client.metadata,
        )
        await leader.run_pass()
        await asyncio.sleep(GRACE + 0.5)
        await leader.run_pass()
        assert await still_held(registry), "own node judged gone while its lease is held"
    finally:
        await fleet.stop()  # the lease revoked: from now on a node like any other
    assert not fleet.agent.holds_lease()
    await leader.run_pass()
    assert not await still_held(registry)


async def _put_raw(registry: Registry, key: bytes, value: bytes, lease: int = 0) -> None:
    await registry.client.kvstub.Put(
        rpc.PutRequest(key=key, value=value, lease=lease),
        timeout=5.0,
        metadata=registry.client.metadata,
    )


async def test_a_heartbeat_key_on_no_lease_is_no_live_node(registry: Registry) -> None:
    """A node's heartbeat key put on no lease (etcdctl put without --lease, a restore) is
    never expired by etcd: taken for a heartbeat, its node would be alive for good, never
    NotReady, its cells never moved, whatever became of it."""
    live = await take_lease(registry, "live")
    try:
        ghost = (heartbeat_prefix(registry.key_prefix) + "ghost").encode()
        await _put_raw(registry, ghost, b"garbage{")
        assert await alive_nodes(registry.client, registry.key_prefix) == {"live"}
    finally:
        await live.close(revoke=True)


@pytest.mark.parametrize("how", ["overwritten", "deleted"])
async def test_a_node_puts_its_heartbeat_key_back_on_its_lease(
    registry: Registry, tmp_path: Path, how: str
) -> None:
    """Its heartbeat key overwritten on no lease or deleted behind its back while its
    kukeond runs: the node puts it back on its lease at its next beat (else the leader
    would mark a live node NotReady, or never mark a dead one)."""
    op = Operator(
        registry, settings=fast_settings(node_name="own"), collector_registry=CollectorRegistry()
    )
    config = DaemonConfig(
        node_name="own", node_lease_ttl=5, node_heartbeat_seconds=0.5, state_dir=tmp_path
    )
    fleet = await start_fleet(op, registry=registry, config=config, containerd=None)
    try:
        key = fleet.agent.heartbeat_key
        if how == "deleted":
            await registry.client.kvstub.DeleteRange(
                rpc.DeleteRangeRequest(key=key), timeout=5.0, metadata=registry.client.metadata
            )
        else:
            await _put_raw(registry, key, b"garbage{")
        session = fleet.agent._session
        assert session is not None
        for _ in range(100):
            found = await registry.client.kvstub.Range(
                rpc.RangeRequest(key=key), timeout=5.0, metadata=registry.client.metadata
            )
            if found.kvs and int(found.kvs[0].lease) == session.lease_id:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the heartbeat key is not back on the node's lease: {found}")
    finally:
        await fleet.stop()
