"""A kukeond killed (SIGKILL) in the middle of a burst of creates into one realm: each
write and its rewrite of the realm's serial key are one etcd transaction, so nothing is
half-written, and the nodes left count what is stored and still hold the limit exactly,
taking over a serial key whose token belongs to the dead process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap

import pytest

from kukeon.store import QuotaExceeded, Registry
from tests.fixtures.etcd import EtcdServer

from .objects import cell
from .test_realm_quotas import _parents, _until
from .test_realm_quotas_two_nodes import ROOM, _stored, _two_nodes

pytestmark = pytest.mark.integration

_BURST = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from kukeon.store import EtcdConfig, Registry
    from kukeon.store.realmquota import QuotaLimits, RealmQuotas
    from tests.integration.store.objects import cell

    async def main() -> None:
        given = json.loads(sys.argv[1])
        config = EtcdConfig(
            endpoints=given["endpoints"],
            ca_file=Path(given["ca_file"]),
            cert_file=Path(given["cert_file"]),
            key_file=Path(given["key_file"]),
            server_name=given["server_name"],
            key_prefix=given["key_prefix"],
        )
        registry = await Registry.connect(config)
        quotas = RealmQuotas(client=registry.client, config=registry.config,
                             layout=registry.layout, defaults=QuotaLimits(None, None))
        asyncio.create_task(quotas.run())
        await quotas.wait_synced()
        registry.enforce_quotas(quotas)
        realm = given["realm"]
        cells = [cell(realm, "s", "st", f"dead{i}") for i in range(40)]
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go"
        in_flight = asyncio.Semaphore(3)  # a burst long enough to be killed in its middle

        async def create(c):
            async with in_flight:
                await registry.create(c)

        await asyncio.gather(*(create(c) for c in cells), return_exceptions=True)
        await asyncio.sleep(3600)  # killed before this ends

    asyncio.run(main())
    """
)


async def _killed_mid_burst(
    registry: Registry, etcd_server: EtcdServer, prefix: str, realm: str, delay: float
) -> int:
    """Run a burst of 40 creates into ``realm`` in another process, SIGKILL it ``delay``
    seconds after its first write is stored; what it left stored."""
    config = etcd_server.config(key_prefix=prefix)
    given = {
        "endpoints": list(config.endpoints),
        "ca_file": str(config.ca_file),
        "cert_file": str(config.cert_file),
        "key_file": str(config.key_file),
        "server_name": config.server_name,
        "key_prefix": prefix,
        "realm": realm,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _BURST,
        json.dumps(given),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        assert line.strip() == b"ready", line
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        async with asyncio.timeout(20):
            while await _stored(registry, realm) == 0:  # noqa: ASYNC110 (etcd has no event)
                await asyncio.sleep(0.001)
        await asyncio.sleep(delay)
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return await _stored(registry, realm)


async def test_a_node_killed_mid_burst_leaves_a_consistent_count(
    registry: Registry, etcd_server: EtcdServer, etcd_key_prefix: str
) -> None:
    left: list[int] = []
    for index in range(12):
        delay = (0.0, 0.002, 0.005)[index % 3]
        realm = f"k{index}"
        await _parents(registry, realm, {"objects": 10})
        stored = await _killed_mid_burst(registry, etcd_server, etcd_key_prefix, realm, delay)
        assert stored <= ROOM
        left.append(stored)
        async with _two_nodes(registry, etcd_server, etcd_key_prefix) as (a, qa, b, qb):
            await _until(
                lambda realm=realm, stored=stored: (
                    qa.usage(realm).objects == qb.usage(realm).objects == 2 + stored
                )
            )
            for number in range(ROOM - stored):
                await (a if number % 2 else b).create(cell(realm, "s", "st", f"c{number}"))
            for node in (a, b):
                with pytest.raises(QuotaExceeded):
                    await node.create(cell(realm, "s", "st", "over"))
            assert await _stored(a, realm) == ROOM
        if sum(0 < stored < ROOM for stored in left) >= 2:
            break  # killed mid-burst twice: enough (a write often lands with its batch)
    # Some kill landed mid-burst (what is asserted above is then the point).
    assert any(0 < stored < ROOM for stored in left), left
