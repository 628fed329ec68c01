"""A node name is one installation's: a second kukeond taking a name whose heartbeat is
alive and written from another host or state directory is refused at start (both would
run that node's cells: two copies); the same installation coming back goes on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
import pytest
from aetcd import rpc

from kukeon.daemon.nodename import check_node_name, host_identity
from kukeon.daemon.starterrors import StartupError
from kukeon.framework.heartbeats import Heartbeat, NodeNameTaken, heartbeat_of
from kukeon.store import Registry
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.integration


async def test_a_name_held_elsewhere_is_refused_and_freed_with_its_lease(
    registry: Registry, tmp_path: Path
) -> None:
    machine = tmp_path / "machine-id"
    machine.write_text("0123abcd\n")
    here = host_identity(tmp_path / "state", machine)
    other = host_identity(tmp_path / "elsewhere", machine)
    assert here != other
    assert here == host_identity(tmp_path / "state", machine)
    client, prefix = registry.client, registry.key_prefix

    await check_node_name(client, prefix, node_name="n1", host=other, ttl=2)  # nobody yet
    beat = Heartbeat(
        client=client, prefix=prefix, node_name="n1", ttl=2, refresh_interval=0.5, host=here
    )
    running = asyncio.create_task(beat.run())
    try:
        await asyncio.wait_for(beat.alive.wait(), 10)
        await check_node_name(client, prefix, node_name="n1", host=here, ttl=2)  # itself
        await check_node_name(client, prefix, node_name="n2", host=other, ttl=2)
        with pytest.raises(StartupError, match=r"node name 'n1' is in use by another kukeond"):
            await check_node_name(client, prefix, node_name="n1", host=other, ttl=2)
        # A crash: the heartbeat stays until its lease expires, then the name is free.
        beat.release_on_exit = False
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    with pytest.raises(StartupError):
        await check_node_name(client, prefix, node_name="n1", host=other, ttl=2)
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        try:
            await check_node_name(client, prefix, node_name="n1", host=other, ttl=2)
            break
        except StartupError:
            assert asyncio.get_running_loop().time() < deadline, "the lease never expired"
            await asyncio.sleep(0.2)


async def test_a_name_claim_on_no_lease_holds_nothing(registry: Registry, tmp_path: Path) -> None:
    """A node's heartbeat put on no lease (etcdctl put without --lease, a restore) never
    expires: it held the name for good, a start elsewhere refused with 'its heartbeat
    expires within 2s'. A key on no lease is no process's heartbeat."""
    client, prefix = registry.client, registry.key_prefix
    claim = json.dumps({"node": "n1", "host": "gone/0:/var/lib/kukeon", "ttl": 2}).encode()
    await client.kvstub.Put(
        rpc.PutRequest(key=f"{prefix}/leases/nodes/n1".encode(), value=claim),
        metadata=client.metadata,
    )
    here = host_identity(tmp_path / "state", tmp_path / "machine-id")
    await check_node_name(client, prefix, node_name="n1", host=here, ttl=2)


async def test_a_claim_nested_past_the_stack_is_an_unknown_holder(
    registry: Registry, tmp_path: Path
) -> None:
    """A node's heartbeat key holding JSON nested 5,000 deep on a live lease (put by hand):
    json's RecursionError, no ValueError, came out of the start's name check (kukeond did
    not start, with a traceback) and out of the heartbeat's look at the holder (its task
    crashed at each try). Now it is a holder of unknown host: the start goes on, the
    heartbeat is displaced and claims the name once that lease goes."""
    client, prefix = registry.client, registry.key_prefix
    key = f"{prefix}/leases/nodes/n1".encode()
    granted = await client.leasestub.LeaseGrant(
        rpc.LeaseGrantRequest(TTL=60, ID=0), metadata=client.metadata
    )
    await client.kvstub.Put(
        rpc.PutRequest(key=key, value=b"[" * 5000 + b"]" * 5000, lease=granted.ID),
        metadata=client.metadata,
    )
    here = host_identity(tmp_path / "state", tmp_path / "machine-id")
    await check_node_name(client, prefix, node_name="n1", host=here, ttl=2)
    beat = _heartbeat(registry, here)
    running = asyncio.create_task(beat.run())
    try:
        await _until(lambda: beat.displaced is not None)
        with pytest.raises(NodeNameTaken, match=r"held by another kukeond \(host unknown"):
            beat.name_held()
        await client.leasestub.LeaseRevoke(
            rpc.LeaseRevokeRequest(ID=granted.ID), metadata=client.metadata
        )
        await _until(lambda: beat.displaced is None)
        assert beat.name_held()
        assert not running.done()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        with contextlib.suppress(grpc.aio.AioRpcError):  # revoked above unless it failed
            await client.leasestub.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=granted.ID), metadata=client.metadata
            )


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not true in time"
        await asyncio.sleep(0.02)


def _heartbeat(registry: Registry, host: str) -> Heartbeat:
    return Heartbeat(
        client=registry.client,
        prefix=registry.key_prefix,
        node_name="n1",
        ttl=8,  # not lost on a loaded machine: the test compares lease ids
        refresh_interval=1.0,
        host=host,
    )


async def test_the_holder_puts_its_claim_back_or_says_who_took_it(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    """The claim deleted or overwritten while its kukeond runs (by hand, a restore of an
    older snapshot) stayed gone for good: a kukeond elsewhere could then start with the
    name. Now the holder puts it back; one another process's lease holds makes it say so
    (ERROR, /readyz) and claim the name again once that one goes."""
    client, prefix = registry.client, registry.key_prefix
    key = f"{prefix}/leases/nodes/n1".encode()
    caplog.set_level(logging.INFO, logger="kukeon.framework.heartbeats")

    async def lease_of_key() -> int:
        found = await client.kvstub.Range(rpc.RangeRequest(key=key), metadata=client.metadata)
        return int(found.kvs[0].lease) if found.kvs else 0

    beat = _heartbeat(registry, "here/0:/state")
    running = asyncio.create_task(beat.run())
    other = asyncio.create_task(asyncio.sleep(0))
    try:
        await asyncio.wait_for(beat.alive.wait(), 10)
        ours = beat.lease_id
        assert await lease_of_key() == ours

        # Deleted, then put on no lease: put back on the holder's lease each time.
        await client.kvstub.DeleteRange(rpc.DeleteRangeRequest(key=key), metadata=client.metadata)
        await _until_async(lambda: lease_of_key(), ours)
        await client.kvstub.Put(
            rpc.PutRequest(key=key, value=b"garbage{"), metadata=client.metadata
        )
        await _until_async(lambda: lease_of_key(), ours)

        def put_back_said() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "put back on its lease" in r.getMessage()]

        # Said once the put is done: the test can read the key back before the holder's
        # task resumes to say it (seen once in CI).
        await _until(lambda: len(put_back_said()) == 2)
        put_back = put_back_said()
        assert [r.levelno for r in put_back] == [logging.WARNING] * 2
        assert "was deleted" in put_back[0].getMessage()
        assert "was put on no lease" in put_back[1].getMessage()
        assert beat.name_held()
        holder = await heartbeat_of(client, prefix, "n1")
        assert holder is not None
        assert holder["host"] == "here/0:/state"

        # Its own claim found on another lease (etcd restarted restores the lease the
        # process lost and registered again after): taken onto its lease, not displaced.
        own = await client.kvstub.Range(rpc.RangeRequest(key=key), metadata=client.metadata)
        old = await client.leasestub.LeaseGrant(
            rpc.LeaseGrantRequest(TTL=60, ID=0), metadata=client.metadata
        )
        await client.kvstub.Put(
            rpc.PutRequest(key=key, value=own.kvs[0].value, lease=old.ID), metadata=client.metadata
        )
        await _until_async(lambda: lease_of_key(), ours)
        assert beat.displaced is None
        await client.leasestub.LeaseRevoke(
            rpc.LeaseRevokeRequest(ID=old.ID), metadata=client.metadata
        )

        # Another kukeond's lease takes it (a put over it, as a restore or a blind put
        # does): the holder does not fight it; it says who and is not ready.
        granted = await client.leasestub.LeaseGrant(
            rpc.LeaseGrantRequest(TTL=60, ID=0), metadata=client.metadata
        )
        theirs = json.dumps({"node": "n1", "host": "elsewhere/1:/x", "startedAt": "t0"})
        await client.kvstub.Put(
            rpc.PutRequest(key=key, value=theirs.encode(), lease=granted.ID),
            metadata=client.metadata,
        )
        await _until(lambda: beat.displaced is not None)
        with pytest.raises(NodeNameTaken, match=r"held by another kukeond \(elsewhere/1:/x"):
            beat.name_held()
        await asyncio.sleep(1.0)
        assert await lease_of_key() == granted.ID
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        # That one gone, the name is the holder's again.
        await client.leasestub.LeaseRevoke(
            rpc.LeaseRevokeRequest(ID=granted.ID), metadata=client.metadata
        )
        await _until(lambda: beat.displaced is None)
        assert await lease_of_key() == ours
        assert beat.name_held()

        # A second Heartbeat of the name from elsewhere does not take it either, and
        # claims it once the first stops.
        second = _heartbeat(registry, "elsewhere/1:/x")
        other = asyncio.create_task(second.run())
        await asyncio.wait_for(second.alive.wait(), 10)
        await _until(lambda: second.displaced is not None)
        assert beat.name_held()
        assert await lease_of_key() == ours
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await _until(lambda: second.displaced is None)
        assert await lease_of_key() == second.lease_id
        assert all(r.exc_info is None for r in caplog.records)
    finally:
        for task in (running, other):
            task.cancel()
        await asyncio.gather(running, other, return_exceptions=True)


async def _until_async(read: Callable[[], Awaitable[int]], wanted: int, within: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while await read() != wanted:
        assert asyncio.get_running_loop().time() < deadline, "not true in time"
        await asyncio.sleep(0.02)


async def test_kukeond_is_not_ready_while_another_lease_holds_its_name(kukeond: Kukeond) -> None:
    k = kukeond
    client, prefix = k.registry.client, k.registry.key_prefix
    key = f"{prefix}/leases/nodes/{k.config.node_name}".encode()
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as http:

        async def readyz() -> tuple[int, str]:
            async with http.get("http://kukeond/readyz?verbose") as response:
                return response.status, await response.text()

        assert (await readyz())[0] == 200
        granted = await client.leasestub.LeaseGrant(
            rpc.LeaseGrantRequest(TTL=60, ID=0), metadata=client.metadata
        )
        theirs = json.dumps({"node": k.config.node_name, "host": "elsewhere/1:/x"})
        await client.kvstub.Put(
            rpc.PutRequest(key=key, value=theirs.encode(), lease=granted.ID),
            metadata=client.metadata,
        )
        for _ in range(200):
            status, body = await readyz()
            if status == 503:
                break
            await asyncio.sleep(0.05)
        assert status == 503, body
        assert "[-]controllers failed: NodeNameTaken: node name" in body, body
        assert "elsewhere/1:/x" in body
        await client.leasestub.LeaseRevoke(
            rpc.LeaseRevokeRequest(ID=granted.ID), metadata=client.metadata
        )
        for _ in range(200):
            status, body = await readyz()
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200, body
        assert "[+]controllers ok" in body
