"""Two kukeon control planes on one host never touch each other's cells.

The second is installed by hand beside the first, as an operator would: its own etcd data
(here a key prefix of its own), state directory, cgroup root, nft table and subnet pool,
but the same containerd, network-namespace directory and CNI configuration directory, and
the very same realm, space, stack and cell names. Both run their orphan collection over
and over while their cells run; each cell keeps its containers, its namespace and the
address its status names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from kukeon.daemon.app import Daemon
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.network import cell_network_id
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd, clean_namespace
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukeond import Kukeond, kukeond_config, sweep_host
from tests.fixtures.soak import SOAK_SECONDS, BackgroundSoak

from .helpers import cell_doc, cell_key, container, container_ids

pytestmark = pytest.mark.integration

ROUNDS = 8


@pytest.fixture
async def second(
    kukeond: Kukeond,
    tmp_path: Path,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
) -> AsyncIterator[Kukeond]:
    base = kukeond_config(
        tmp_path / "second",
        containerd=containerd_daemon,
        etcd=etcd_server,
        prefix=f"{etcd_key_prefix}-second",
    )
    config = base.model_copy(
        update={"netns_dir": kukeond.config.netns_dir, "cni_conf_dir": kukeond.config.cni_conf_dir}
    )
    daemon = Daemon(config)
    await daemon.start()
    assert daemon.registry is not None
    other = Kukeond(
        daemon=daemon,
        config=config,
        registry=daemon.registry,
        realm=kukeond.realm,  # the same names on purpose
        image=containerd_test_image,
    )
    try:
        yield other
    finally:
        with contextlib.suppress(Exception):
            await other.registry.delete(Kind.REALM, (other.realm,), cascade=True)
            await other.wait_gone(Kind.REALM, (other.realm,), within=60)
        await daemon.stop()
        client = ContainerdClient(containerd_daemon.address)
        try:
            with contextlib.suppress(Exception):
                await clean_namespace(client, other.namespace)
        finally:
            await client.close()
        await sweep_host(config, realm=other.realm, spaces=["s1"])


def _addresses(netns: Path) -> set[str]:
    shown = subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "-o", "-4", "addr", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {str(ipaddress.ip_interface(word).ip) for word in shown.split() if "/" in word}


async def _check(k: Kukeond, netns: Path) -> None:
    cell = await k.registry.get(Kind.CELL, cell_key(k, "web"))
    assert isinstance(cell, Cell)
    assert str(cell.status.state) == "Ready", cell.status
    assert "s1_st1_web_a" in await container_ids(k)
    assert await asyncio.to_thread(netns.exists), netns
    assert cell.status.network.ip in await asyncio.to_thread(_addresses, netns)


async def test_side_by_side_without_touching_each_other(kukeond: Kukeond, second: Kukeond) -> None:
    first = kukeond
    assert first.namespace != second.namespace
    for k in (first, second):
        await k.hierarchy()
        await k.apply(cell_doc(k, "web", [container(k, "a")]))
    for k in (first, second):
        await k.wait_for(Kind.CELL, cell_key(k, "web"), state="Ready")

    def netns_of(k: Kukeond) -> Path:
        controllers = k.daemon.controllers
        assert controllers is not None
        name = cell_network_id(cell_key(k, "web"), k.config.instance)
        return controllers.host.networks.netns.path(name)

    paths = {netns_of(first), netns_of(second)}
    assert len(paths) == 2  # one directory, two namespaces
    for _round in range(ROUNDS):
        for k in (first, second):
            controllers = k.daemon.controllers
            assert controllers is not None
            assert await controllers.collect_orphans() == []
        for k in (first, second):
            await _check(k, netns_of(k))
        await asyncio.sleep(0.5)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 900)
def test_ten_minutes_side_by_side(side_by_side_soak: BackgroundSoak) -> None:
    """The same promise over ten minutes with separate etcds, the host's default netns and
    CNI directories, cells of the same names created and deleted in both planes, and the
    rest of the suite running beside it (see tests/soak/side_by_side.py)."""
    verdict = side_by_side_soak.verdict(grace=600)
    assert verdict["ok"], f"{verdict['failure']}\n{side_by_side_soak.log_tail()}"
    assert verdict["soakSeconds"] >= 600, f"a shortened soak ({verdict['soakSeconds']} s)"
    assert verdict["collections"] >= 120  # both planes, every round
    assert verdict["jobs"] >= 20
