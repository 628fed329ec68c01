"""A space's bridge never outlives its space on a real kukeond: a port kukeon did not make
holds the space's deletion (named in its status) until it leaves, and a start sweeps the
idle bridge an earlier kukeond left when it kept a bridge for its ports and removed the
rest (its egress chain, conflist and subnet record), with the bridge's FORWARD accepts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from kukeon.api import AnyResource, Kind
from kukeon.runtime.network import (
    JsonFileSubnetStore,
    NftEgress,
    bridge_name,
    link_exists,
)
from kukeon.runtime.network.forward import ForwardAccepts, marked_rules
from kukeon.runtime.network.space import space_conflist_path
from tests.fixtures.kukeond import Kukeond
from tests.integration.network.conftest import foreign_veth, run

from .helpers import cell_doc, cell_key, container
from .test_layer_orphans import erase, stopped

pytestmark = pytest.mark.integration


@pytest.fixture
async def space_bridge(kukeond: Kukeond) -> AsyncIterator[str]:
    """Space s1's bridge, deleted at the end with its FORWARD accepts if a failed test left
    them (the fixture's own sweep finds only the spaces still in the registry or in the
    daemon's subnet file)."""
    name = bridge_name(kukeond.realm, "s1", kukeond.config.instance)
    try:
        yield name
    finally:
        run("ip", "link", "del", name)
        await ForwardAccepts().remove(name)


def forward_accepts_of(bridge: str) -> list[list[str]]:
    listing = run("iptables", "-S", "FORWARD", check=True).stdout
    return [spec for marked, spec in marked_rules(listing) if marked == bridge]


@pytest.fixture
def foreign_port() -> Iterator[str]:
    with foreign_veth() as name:
        yield name


async def test_a_foreign_port_holds_the_spaces_deletion_and_is_named(
    kukeond: Kukeond, foreign_port: str, space_bridge: str
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "a", [container(k, "a")]))
    key = cell_key(k, "a")
    await k.wait_for(Kind.CELL, key, state="Ready")
    bridge = space_bridge
    run("ip", "link", "set", foreign_port, "master", bridge, check=True)

    await k.registry.delete(Kind.SPACE, (k.realm, "s1"), cascade=True)

    def says_why(space: AnyResource) -> bool:
        message = getattr(space.status, "message", None) or ""
        return getattr(space.status, "reason", None) == "ForeignPortOnBridge" and (
            foreign_port in message
        )

    await k.wait_for(Kind.SPACE, (k.realm, "s1"), until=says_why)
    await k.wait_gone(Kind.CELL, key)
    # Held whole: the port is still filtered by the space's chain on a bridge that stays.
    assert await link_exists(bridge)
    egress = NftEgress(table=k.config.nft_table)
    assert bridge in (await egress.state()).bridges

    run("ip", "link", "set", foreign_port, "nomaster", check=True)
    await k.wait_gone(Kind.SPACE, (k.realm, "s1"))
    assert not await link_exists(bridge)
    assert bridge not in (await egress.state()).bridges


async def test_a_start_sweeps_the_bridge_an_earlier_teardown_left(
    kukeond: Kukeond, space_bridge: str
) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "a", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "a"), state="Ready")
    bridge = space_bridge
    assert await link_exists(bridge)
    assert len(forward_accepts_of(bridge)) == 2

    # Down: the space goes, and its host side is left as the old teardown left it when it
    # found ports on the bridge: everything removed but the bridge.
    async with stopped(k) as registry:
        await erase(registry, k.config.etcd_prefix, (k.realm, "s1"))
        await NftEgress(table=k.config.nft_table).remove(bridge=bridge)
        conflist = space_conflist_path(
            conf_dir=k.config.cni_conf_dir, realm=k.realm, space="s1", instance=k.config.instance
        )
        await asyncio.to_thread(conflist.unlink)
        subnets = JsonFileSubnetStore(path=k.config.state_dir / "network" / "subnets.json")
        assert await subnets.release(f"{k.realm}/s1")

    # The start's orphan pass removed the cell (its veth went with its namespace), then
    # the idle bridge no space of this node holds, and the FORWARD accepts naming it (no
    # teardown finds them once the bridge is gone: every run of the suite left this pair).
    assert not await link_exists(bridge)
    assert forward_accepts_of(bridge) == []


async def test_a_foreign_port_is_warned_of_once_not_at_every_orphan_pass(
    kukeond: Kukeond, foreign_port: str, space_bridge: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A space that went while its node was down (the leader released what the node held)
    leaves its network to the node's orphan passes; a port kukeon did not make keeps it
    there. Each pass finds it again: a warning when that starts (and when what stands in
    the way changes), not one every pass for as long as it lasts; said again when it went."""
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "a", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "a"), state="Ready")
    run("ip", "link", "set", foreign_port, "master", space_bridge, check=True)
    async with stopped(k) as registry:
        await erase(registry, k.config.etcd_prefix, (k.realm, "s1"))
    controllers = k.daemon.controllers
    assert controllers is not None

    def said(level: int) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= level and foreign_port in r.getMessage()
        ]

    with caplog.at_level(logging.DEBUG, logger="kukeon"):
        for _ in range(3):
            await controllers.collect_orphans()
        assert len(said(logging.WARNING)) == 1, said(logging.WARNING)
        assert await link_exists(space_bridge)
        run("ip", "link", "set", foreign_port, "nomaster", check=True)
        removed = await controllers.collect_orphans()
    assert f"network of space {k.realm}/s1" in removed, removed
    assert not await link_exists(space_bridge)
