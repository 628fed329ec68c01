"""A node name is one installation's: a second kukeond taking a name whose heartbeat is
alive and written from another host or state directory is refused at start (both would
run that node's cells: two copies); the same installation coming back goes on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aetcd import rpc

from kukeon.daemon.nodename import check_node_name, host_identity
from kukeon.daemon.starterrors import StartupError
from kukeon.framework.leases import Heartbeat
from kukeon.store import Registry

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
