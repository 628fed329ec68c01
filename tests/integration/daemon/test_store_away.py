"""etcd away from a running kukeond: what becomes of its cells, and what it says meanwhile.

- On an external etcd that stops (the fleet's case: no other node can tell it from a cut
  of this node alone), the node fences itself after ``fenceAfterSeconds``, also once its
  heartbeat lease, lost, has been given up for a new one that etcd cannot grant. Before,
  its silence was counted from the current lease only, and there was none then: with the
  defaults the lease is given up 30 s after the last renewal (TTL 40 s less one heartbeat),
  before the fence at 40 s, so a node cut from etcd never fenced, and its cells ran twice
  once the scheduler placed them elsewhere. With etcd back it unfences: the cell runs again.
- On the embedded etcd the node never fences: that etcd serves this kukeond alone, so no
  other node can take its cells, and stopping them while it is away protected nothing.
  Its cells run on through the outage (the same task); /readyz says etcd failed, /metrics
  how long etcd has not confirmed the lease; after it, a new cell starts and no supervised
  task was restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.runtime.containerd.tasks import TaskStatus
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd
from tests.fixtures.etcd import EtcdServer, running_etcd_server
from tests.fixtures.kukeond import Kukeond, kukeond_config, running_kukeond, started_kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container
from tests.integration.daemon.test_unreadable_cells import until

pytestmark = pytest.mark.integration

LEASE = {"node_lease_ttl": 3, "node_heartbeat_seconds": 1.0}
"""A lease given up 2 s after its last renewal (TTL less one heartbeat)."""
FENCE_AFTER = 4.0
"""Past the lease's loss: the fence comes after the lost lease is given up."""


def gauge(k: Kukeond, name: str) -> float:
    value = k.daemon.metrics_registry.get_sample_value(name)
    assert value is not None, f"{name} is not on /metrics"
    return value


async def running_tasks(k: Kukeond) -> dict[str, int]:
    """Container id -> pid of every running task of the test's realm."""
    tasks = await k.containerd.tasks(k.namespace).list()
    return {t.container_id: t.pid for t in tasks if t.status == TaskStatus.RUNNING}


async def a_ready_cell(k: Kukeond, name: str) -> str:
    """A scheduler-placed cell of ``k``, Ready: its container's id."""
    await k.apply(cell_doc(k, name, [container(k, "main")]))
    await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")
    (found,) = [cid for cid in await running_tasks(k) if name in cid]
    return found


async def test_a_node_whose_etcd_stops_fences_itself_and_comes_back(
    tmp_path: Path,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
) -> None:
    with running_etcd_server() as etcd:
        async with started_kukeond(
            tmp_path,
            etcd=etcd,
            prefix="/kukeon",
            containerd=containerd_daemon,
            image=containerd_test_image,
            overrides={**LEASE, "fence_after_seconds": FENCE_AFTER},
        ) as k:
            await k.hierarchy()
            placed = await a_ready_cell(k, "placed")
            await asyncio.to_thread(etcd.member.stop)
            try:

                async def fenced() -> bool:
                    return placed not in await running_tasks(k)

                await until(fenced, within=FENCE_AFTER + 10)
                assert gauge(k, "kukeon_node_fenced") == 1
                assert gauge(k, "kukeon_node_lease_unconfirmed_seconds") >= FENCE_AFTER
            finally:
                await asyncio.to_thread(etcd.member.spawn)
                await asyncio.to_thread(etcd.member.wait_healthy)

            async def back() -> bool:
                return placed in await running_tasks(k)

            await until(back, within=60)
            await k.wait_for(Kind.CELL, cell_key(k, "placed"), state="Ready")
            assert gauge(k, "kukeon_node_fenced") == 0


@pytest.fixture
async def on_embedded_etcd(
    tmp_path: Path,
    etcd_server: EtcdServer,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
) -> AsyncIterator[Kukeond]:
    """A kukeond of the test on an embedded etcd of its own (no etcdEndpoints)."""
    embedded: dict[str, Any] = {"etcd_endpoints": [], "etcd_ca_file": None}
    config = kukeond_config(
        tmp_path,
        containerd=containerd_daemon,
        etcd=etcd_server,
        prefix="/kukeon",
        overrides={**embedded, "etcd_cert_file": None, "etcd_key_file": None, **LEASE},
    )
    realm = f"r{secrets.token_hex(3)}"
    async with running_kukeond(
        config, realm, containerd_test_image, containerd_daemon, tmp_path
    ) as running:
        yield running


async def test_a_node_on_the_embedded_etcd_keeps_its_cells_running_while_it_is_away(
    on_embedded_etcd: Kukeond,
) -> None:
    k = on_embedded_etcd
    await k.hierarchy()
    placed = await a_ready_cell(k, "placed")
    pid = (await running_tasks(k))[placed]
    etcd = int((k.config.state_dir / "etcd" / "etcd.pid").read_text())
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as http:

        async def readyz() -> tuple[int, str]:
            async with http.get("http://kukeond/readyz?verbose") as response:
                return response.status, await response.text()

        os.kill(etcd, signal.SIGSTOP)
        try:
            readiness = asyncio.create_task(readyz())

            async def silent_past_the_fence() -> bool:
                # the lease's own fence time (its TTL), and two fencing checks more
                unconfirmed = gauge(k, "kukeon_node_lease_unconfirmed_seconds")
                return unconfirmed >= k.config.fence_after + 2

            await until(silent_past_the_fence, within=30)
            assert gauge(k, "kukeon_node_fenced") == 0
            assert (await running_tasks(k)).get(placed) == pid
            status, text = await asyncio.wait_for(readiness, 30)
            assert status == 503
            assert "[-]etcd failed" in text
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(etcd, signal.SIGCONT)
    await a_ready_cell(k, "after")
    assert (await running_tasks(k)).get(placed) == pid
    restarts = [
        sample
        for metric in k.daemon.metrics_registry.collect()
        if metric.name == "kukeon_task_restarts"
        for sample in metric.samples
        if sample.name == "kukeon_task_restarts_total" and sample.value
    ]
    assert restarts == [], restarts
