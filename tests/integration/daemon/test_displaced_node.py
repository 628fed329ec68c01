"""Two kukeonds with one node name on one etcd: the one whose claim another's lease holds
converges nothing until the name is its own.

The second kukeond is a copy on another "host": its own state directory, cgroup root, nft
table, netns directory and subnet pool, the same etcd prefix and node name, and (as the
fleet tests' nodes) the same containerd and namespace. A start refuses that
(``check_node_name``) unless both start at once, before either claimed the name; the test
stands in for that race by skipping the check for the second. Before, the second
reconciled every cell of the node as well, the two undoing each other's work; now it
starts nothing, and takes over once the first is gone (a crash: its lease left to expire,
its workloads gone as with the host's power).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aetcd import rpc

from kukeon.api import Kind
from kukeon.daemon import nodename
from kukeon.framework.heartbeats import NodeNameTaken
from kukeon.framework.metrics import (
    RESULT_ERROR,
    RESULT_PERMANENT,
    RESULT_SUCCESS,
    RESULT_TEMPORARY,
    RESULT_WAITING,
)
from kukeon.runtime.containerd.containers import MANAGED_FILTER
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd, clean_namespace
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukeond import Kukeond, kukeond_config, running_kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container

pytestmark = [
    pytest.mark.integration,
    # The name's claim lives 4 s once its holder is gone (the daemon's minimum is 2).
    pytest.mark.kukeond_config(node_lease_ttl=4, node_heartbeat_seconds=1.0),
]


@pytest.fixture
async def copy(
    kukeond: Kukeond,
    tmp_path: Path,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Kukeond]:
    """A second kukeond of ``kukeond``'s node name, as if both had started at once."""
    config = kukeond_config(
        tmp_path / "copy",
        containerd=containerd_daemon,
        etcd=etcd_server,
        prefix=etcd_key_prefix,
        overrides={
            "node_name": kukeond.config.node_name,
            "node_lease_ttl": 4,
            "node_heartbeat_seconds": 1.0,
        },
    )

    async def both_passed_the_check(*_: object, **__: object) -> None:
        return None

    monkeypatch.setattr(nodename, "check_node_name", both_passed_the_check)
    async with running_kukeond(
        config, kukeond.realm, containerd_test_image, containerd_daemon, tmp_path / "copy"
    ) as other:
        yield other


async def _containers(k: Kukeond) -> list[str]:
    return sorted(c.id for c in await k.containerd.containers(k.namespace).list(MANAGED_FILTER))


def _sample(k: Kukeond, name: str, **labels: str) -> float:
    return k.daemon.metrics_registry.get_sample_value(name, labels) or 0.0


def _cell_passes(k: Kukeond) -> float:
    results = (RESULT_SUCCESS, RESULT_TEMPORARY, RESULT_PERMANENT, RESULT_ERROR, RESULT_WAITING)
    return sum(_sample(k, "kukeon_reconcile_total", kind="Cell", result=r) for r in results)


async def _until(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        assert loop.time() < deadline, "not true in time"
        await asyncio.sleep(0.05)


async def _fleet_key_lease(k: Kukeond) -> int:
    client = k.registry.client
    key = f"{k.registry.key_prefix}/leases/fleet/{k.config.node_name}".encode()
    found = await client.kvstub.Range(rpc.RangeRequest(key=key), metadata=client.metadata)
    return int(found.kvs[0].lease) if found.kvs else 0


async def test_a_displaced_kukeond_starts_nothing_and_takes_over_once_the_holder_is_gone(
    kukeond: Kukeond, copy: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = kukeond, copy
    assert first.daemon.operator is not None
    assert first.daemon.fleet is not None
    op = second.daemon.operator
    assert op is not None
    assert second.daemon.controllers is not None

    # Displaced from its start: not ready, says so, converges nothing.
    assert not op.gate.is_open()
    with pytest.raises(NodeNameTaken, match="held by another kukeond"):
        op.ready()
    assert _sample(second, "kukeon_node_name_displaced") == 1
    assert _sample(first, "kukeon_node_name_displaced") == 0
    assert first.daemon.operator.ready()

    await first.hierarchy()
    key = cell_key(first, "c1")
    await first.apply(cell_doc(first, "c1", [container(first, "main")]))
    await first.wait_for(Kind.CELL, key, state="Ready")
    ones = await _containers(first)
    assert len(ones) == 1
    holder_lease = first.daemon.fleet.agent._session
    assert holder_lease is not None
    task = await first.containerd.tasks(first.namespace).get(ones[0])
    await asyncio.sleep(3.0)  # a copy, if anything started one, would be there by now
    assert await _containers(second) == ones
    assert (await first.containerd.tasks(first.namespace).get(ones[0])).pid == task.pid
    assert _cell_passes(second) == 0
    assert _sample(second, "kukeon_reconcile_total", kind="Stack", result="success") == 0
    # The node's heartbeat stays the holder's: the copy does not put it on a lease of its own.
    assert await _fleet_key_lease(first) == holder_lease.lease_id

    # The holder's host goes down: its lease left to expire, its workloads gone with it.
    caplog.set_level(logging.WARNING, logger="kukeon.framework.operator")
    first.daemon.fleet.agent.release_on_exit = False
    await first.daemon.operator.stop(release_leases=False)
    await first.daemon.stop()
    await clean_namespace(second.containerd, second.namespace)  # the host's power, gone
    assert second.daemon.controllers is not None  # (the image with it: back for the copy)
    await second.daemon.controllers.images.import_archive(
        namespace=second.namespace, path=second.image.archive
    )
    first.registry = second.registry  # (the fixture's teardown reads through a live one)

    async def taken_over() -> bool:
        return op.gate.is_open()

    await _until(taken_over, within=20)
    assert "converging, resync" in caplog.text
    assert _sample(second, "kukeon_node_name_displaced") == 0

    async def runs_c1() -> bool:
        return len(await _containers(second)) == 1

    await _until(runs_c1, within=60)
    await second.wait_for(Kind.CELL, key, state="Ready")
    await second.apply(cell_doc(second, "c2", [container(second, "main")]))
    await second.wait_for(Kind.CELL, cell_key(second, "c2"), state="Ready")
    assert len(await _containers(second)) == 2
    assert await _fleet_key_lease(second) not in (0, holder_lease.lease_id)
    assert op.ready()
