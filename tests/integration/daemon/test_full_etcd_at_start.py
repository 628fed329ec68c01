"""kukeond starts on an etcd whose NOSPACE alarm is raised, says so, and heals.

Before, the start failed (a traceback ending in ``SpaceExceeded: create Node ...``: a full
etcd refuses every transaction that puts, even one whose compare would fail, and every
lease grant), so kukeond restarted in a loop while its cells' API, the reads and deletes a
full etcd still takes, and for an embedded etcd the space keeper that clears the alarm,
were all gone. /readyz said nothing of a full etcd either: its ``etcd`` check reads, and a
full etcd answers reads. Now the start goes on without the heartbeat, a warning says why,
/readyz fails its ``etcd-space`` check naming the alarm, and once an operator frees room,
compacts, defragments and disarms (``recover_space`` does those steps), the heartbeat loop
registers the node and takes its lease by itself, and /readyz passes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import aiohttp
import pytest
from aetcd import rpc

from kukeon.api import Cell, Kind, Node
from kukeon.daemon.app import Daemon
from kukeon.daemon.node import HEARTBEAT_BACKOFF_MAX, heartbeat_retry_delay
from kukeon.store import Registry
from kukeon.store.spacekeeping import recover_space
from tests.fixtures.etcd import EtcdServer, running_etcd_server
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

QUOTA = 8 * 1024 * 1024
AFTER_HEARTBEAT = 4.0
"""Seconds watched after the heartbeat lease is back: the scheduler's passes (one a second)
that follow it."""
VALUE = b"x" * (512 * 1024)


def _to_longest_back_off() -> float:
    """Seconds of the heartbeat loop's back-off sleeps before its first longest one (0.5 +
    1 + 2 + 4 + 8): from then on each refused attempt waits the longest back-off."""
    total, failures = 0.0, 1
    while (delay := heartbeat_retry_delay(failures)) < HEARTBEAT_BACKOFF_MAX:
        total, failures = total + delay, failures + 1
    return total


@pytest.fixture
def etcd_server() -> Iterator[EtcdServer]:
    """The kukeond fixture's etcd, of its own, with a backend quota a test can fill."""
    with running_etcd_server(["--quota-backend-bytes", str(QUOTA)]) as server:
        yield server


async def _fill(registry: Registry) -> None:
    """Keys outside kukeond's prefix until etcd refuses one for space."""
    client = registry.client
    for index in range(10 * QUOTA // len(VALUE)):
        try:
            await client.kvstub.Put(
                rpc.PutRequest(key=f"/fill/{index:04d}".encode(), value=VALUE),
                timeout=10,
                metadata=client.metadata,
            )
        except Exception as error:
            if "database space exceeded" not in str(error):
                raise
            return
    raise AssertionError("etcd took more than ten times its quota")


async def _a_running_cell(k: Kukeond) -> tuple[tuple[str, ...], tuple[str]]:
    """A cell running on ``k``: its key, and the key of ``k``'s Node."""
    await k.hierarchy()
    await k.apply(cell_doc(k, "running", [container(k, "main")]))
    running_key = cell_key(k, "running")
    await k.wait_for(Kind.CELL, running_key, state="Ready")
    return running_key, (k.config.node_name,)


async def _restart_on_full_etcd(k: Kukeond, registry: Registry) -> None:
    """Stop kukeond, fill its etcd until it refuses a write for space, start it again."""
    await k.daemon.stop()
    await _fill(registry)
    k.daemon = Daemon(k.config)
    await k.daemon.start()  # before: SpaceExceeded, create Node
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry


async def _api_get(k: Kukeond, path: str) -> tuple[int, str]:
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(f"http://kukeond{path}") as response,
    ):
        return response.status, await response.text()


async def _heartbeat_key(k: Kukeond) -> bool:
    client = k.registry.client
    key = f"{k.config.etcd_prefix}/leases/fleet/{k.config.node_name}".encode()
    reply = await client.kvstub.Range(
        rpc.RangeRequest(key=key, count_only=True), timeout=10, metadata=client.metadata
    )
    return int(reply.count) == 1


async def test_a_start_on_a_full_etcd_serves_says_why_and_heals(
    kukeond: Kukeond, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    k = kukeond
    running_key, node_key = await _a_running_cell(k)
    before = await k.registry.get(Kind.NODE, node_key)
    assert isinstance(before, Node)

    caplog.set_level(logging.INFO, logger="kukeon.daemon.node")
    try:
        await _restart_on_full_etcd(k, registry)

        status, text = await _api_get(k, "/readyz")
        assert status == 503, text
        lines = text.splitlines()
        assert "[+]etcd ok" in lines, text
        line = next(line for line in lines if line.startswith("[-]etcd-space"))
        assert "EtcdFull: etcd's NOSPACE alarm is raised" in line, line
        assert "etcdctl alarm disarm" in line, line  # an external etcd: the operator's
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("etcd is full" in m and "without its heartbeat" in m for m in said), said
        # The API serves reads; the running cell is left alone.
        realm, space, stack, name = running_key
        path = f"/apis/kukeon.io/v1beta1/realms/{realm}/spaces/{space}/stacks/{stack}/cells/{name}"
        status, text = await _api_get(k, path)
        assert status == 200, text
        cell = await k.registry.get(Kind.CELL, running_key)
        assert isinstance(cell, Cell)
        assert str(cell.status.state) == "Ready"

        await registry.client.delete_prefix(b"/fill/")
        assert await recover_space(registry.client)  # compact, defragment, disarm
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (answer := await _api_get(k, "/readyz"))[0] != 200:
            assert loop.time() < deadline, answer
            await asyncio.sleep(0.2)
        deadline = loop.time() + 30
        while not await _heartbeat_key(k):
            assert loop.time() < deadline, "the heartbeat lease was not taken"
            await asyncio.sleep(0.2)
        # The lease comes first, the heartbeat's status write after it: wait for that too.
        assert before.status.last_heartbeat_time is not None
        while True:
            after = await k.registry.get(Kind.NODE, node_key)
            assert isinstance(after, Node)
            beat = after.status.last_heartbeat_time
            if beat is not None and beat > before.status.last_heartbeat_time:
                break
            assert loop.time() < deadline, "no heartbeat written after the lease was taken"
            await asyncio.sleep(0.2)
        # Said when that write's reply reaches the heartbeat loop: this test's read of the
        # written status may be answered first (under load, well before).
        while not any("heartbeat works again" in r.getMessage() for r in caplog.records):
            assert loop.time() < deadline, "the heartbeat's recovery was not said"
            await asyncio.sleep(0.05)
    finally:
        await registry.client.delete_prefix(b"/fill/")
        await recover_space(registry.client)


# A 2 s lease: the election's retries back off to 2 s at most, the heartbeat's to 10 s, so
# the election takes its lease first once etcd takes writes (with the default 15 s and 10 s
# either may come first).
@pytest.mark.kukeond_config(node_lease_ttl=2)
async def test_no_node_is_lost_when_a_full_etcd_takes_writes_again(
    kukeond: Kukeond, registry: Registry
) -> None:
    """A kukeond that started on a full etcd holds neither its heartbeat lease nor the
    scheduler's: once etcd takes writes the election takes its lease within a second, while
    the heartbeat loop sleeps out its back-off (10 s by then). The new leader's first pass
    marked its own node NotReady and its cells Unknown/NodeLost, Ready again right after.
    It now waits for a heartbeat it has not heard since its term began."""
    k = kukeond
    running_key, node_key = await _a_running_cell(k)
    try:
        await _restart_on_full_etcd(k, registry)
        # The heartbeat's refused attempts back off to 10 s (15.5 s of sleeps): then etcd
        # takes writes again while it sleeps. The margin covers the attempts' own time; an
        # attempt later than planned is refused too (etcd is still full) and sleeps 10 s.
        await asyncio.sleep(_to_longest_back_off() + 2.5)
        await registry.client.delete_prefix(b"/fill/")
        assert await recover_space(registry.client)  # compact, defragment, disarm
        seen: set[tuple[str, str, str | None]] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 25  # the heartbeat's back-off, then a few passes
        # Watched until the heartbeat is back and AFTER_HEARTBEAT more: the leader marks a
        # node it has not heard only in the heartbeat's absence (its first passes, a second
        # after etcd takes writes); once the lease is taken every pass hears it.
        watch_until = deadline
        while loop.time() < watch_until:
            node, cell, beating = await asyncio.gather(
                registry.get(Kind.NODE, node_key),
                registry.get(Kind.CELL, running_key),
                _heartbeat_key(k),
            )
            assert isinstance(node, Node)
            assert isinstance(cell, Cell)
            seen.add((str(node.status.state), str(cell.status.state), cell.status.reason))
            if beating and watch_until == deadline:
                watch_until = min(deadline, loop.time() + AFTER_HEARTBEAT)
            await asyncio.sleep(0.2)
        assert await _heartbeat_key(k), "the heartbeat lease was not taken"
        assert not [s for s in seen if s[0] == "NotReady" or s[2] == "NodeLost"], seen
        assert ("Ready", "Ready", None) in seen, seen
    finally:
        await registry.client.delete_prefix(b"/fill/")
        await recover_space(registry.client)
