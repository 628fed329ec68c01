"""kukeond's spare network namespaces (``runtime.network.pool``) on real containerd and
netlink: a new cell takes a spare (its host end renamed after it), the pool refills; a
restart removes the spares a killed kukeond left and keeps the cell's address."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Cell, Kind
from kukeon.daemon.app import Daemon
from kukeon.daemon.config import DaemonConfig
from kukeon.runtime.network import cell_network_id, link_exists
from kukeon.runtime.network.netns import NetnsManager
from kukeon.runtime.network.pool import NetnsPool, PoolEntry
from kukeon.runtime.network.veth import host_ifname
from tests.fixtures.kukeond import Kukeond

from .conftest import speed_up
from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration


def _spares(k: Kukeond) -> set[str]:
    directory = k.config.state_dir / "network" / "netns-pool"
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


async def _refilled(k: Kukeond, size: int) -> set[str]:
    for _ in range(100):  # the refill waits a quiet second after the last cell
        if len(found := _spares(k)) >= size:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{_spares(k)} spares after 10 s")


async def _restart(k: Kukeond, config: DaemonConfig, *, stopped: bool = False) -> None:
    if not stopped:
        await k.daemon.stop()
    k.config = config
    k.daemon = Daemon(config)
    await k.daemon.start()
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry
    speed_up(k)


async def test_a_cell_takes_a_spare_and_a_restart_sweeps_a_killed_kukeonds(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await _restart(k, k.config.model_copy(update={"netns_pool_size": 2}))
    await k.hierarchy()
    await k.apply(cell_doc(k, "first", [container(k, "main")]))
    await k.wait_for(Kind.CELL, cell_key(k, "first"), state="Ready")
    spares = await _refilled(k, 2)
    await k.apply(cell_doc(k, "second", [container(k, "main")]))
    ready = await k.wait_for(Kind.CELL, cell_key(k, "second"), state="Ready")
    assert isinstance(ready, Cell)
    address = ready.status.network.ip
    cell_id = cell_network_id(cell_key(k, "second"), k.config.instance)
    # One of the spares became the cell's: its host end carries the cell's name now.
    assert len(spares - _spares(k)) == 1
    assert await link_exists(host_ifname(cell_id, "eth0"))
    assert not await link_exists(f"kkp{next(iter(spares - _spares(k)))}")
    await _refilled(k, 2)

    # What a kill -9 in the middle of a refill leaves: an entry on file, its namespace
    # and pair made. A clean stop removes the ready spares; the next start, the rest.
    pool = NetnsPool(
        netns=NetnsManager(directory=k.config.netns_dir),
        directory=k.config.state_dir / "network" / "netns-pool",
        size=1,
    )
    left: PoolEntry = await asyncio.to_thread(pool._make)
    await k.daemon.stop()
    assert _spares(k) == {left.token}
    await _restart(k, k.config, stopped=True)
    assert left.token not in _spares(k)
    assert not await link_exists(left.host_ifname)
    assert left.netns_name not in await NetnsManager(directory=k.config.netns_dir).list()
    restarted = await k.wait_for(Kind.CELL, cell_key(k, "second"), state="Ready")
    assert isinstance(restarted, Cell)
    assert restarted.status.network.ip == address
    await _refilled(k, 2)
