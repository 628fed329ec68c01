"""A space's network goes all at once, or not at all: no bridge outlives its egress chain and
subnet record (the record is how the orphan collector finds a half torn-down network again).

Before, a teardown finding ports on the bridge kept the bridge and removed everything else:
the bridge then stayed on the host for good, without its nft chain. Now this node's own
ports (a cell's teardown that has not finished, a kill -9 mid-attach) are removed with the
network, and a port kukeon did not make holds the whole teardown, named.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Interface, IPv4Network

import pytest

from kukeon.runtime.network import (
    BridgeInUseError,
    CellAttachment,
    EgressRuleset,
    SpaceNetworks,
    link_exists,
)
from kukeon.runtime.network.bridge import bridge_port_aliases
from kukeon.runtime.network.forward import ForwardAccepts, marked_rules
from kukeon.runtime.network.veth import host_ifname
from tests.integration.network.conftest import (
    KILLED_MID_ATTACH,
    NetworkHarness,
    foreign_veth,
    killed_in_a_child,
    run,
)

pytestmark = pytest.mark.integration


async def _assert_gone(harness: NetworkHarness, realm: str, space: str, bridge: str) -> None:
    assert not await link_exists(bridge), f"bridge {bridge} left behind"
    assert bridge not in (await harness.networks.egress.state()).bridges
    assert f"{realm}/{space}" not in await harness.networks.subnets.assignments()
    assert not (harness.settings.ipam_dir / bridge).exists()


@pytest.mark.parametrize("builtin", [True, False], ids=["in-process", "cni"])
async def test_a_space_removed_with_a_cell_still_on_its_bridge_leaves_nothing(
    harness: NetworkHarness, builtin: bool
) -> None:
    """The cell's teardown has not run yet (or was cut short): its port goes with the bridge,
    by its record (a CNI DEL for a CNI-made one)."""
    realm, space = harness.new_names()
    status = await harness.space(realm, space, builtin=builtin)
    cell = await harness.cell(realm, space, builtin=builtin)
    assert isinstance(cell, CellAttachment)
    assert await link_exists(status.bridge_name)

    if builtin:  # the bridge and host ends kukeond makes say which node made them
        aliases = await bridge_port_aliases(status.bridge_name)
        assert aliases[host_ifname(cell.cell_id, "eth0")] == harness.settings.port_alias
    else:  # the bridge plugin made the bridge: the space's next pass tags it
        await harness.space(realm, space, builtin=builtin)
    shown = json.loads(run("ip", "-j", "link", "show", status.bridge_name).stdout)
    assert shown[0]["ifalias"] == harness.settings.port_alias

    removal = await harness.networks.remove_space_network(
        realm=realm, space=space, cni_config_path=status.cni_config_path
    )
    assert removal.bridge_removed
    await _assert_gone(harness, realm, space, status.bridge_name)
    assert await harness.networks.records.load(cell.cell_id) is None
    # The cell's own teardown, when it comes, finds nothing left to do on the network.
    await harness.networks.detach_cell(cell_id=cell.cell_id)


@pytest.mark.parametrize("builtin", [True, False], ids=["in-process", "cni"])
async def test_a_namespace_file_a_crash_left_unbound_does_not_hold_the_teardown(
    harness: NetworkHarness, builtin: bool
) -> None:
    """kukeond killed between a cell's namespace unmount and the file's unlink (seen in
    test_crash_recovery's cascade under load): the loopback plugin's DEL refused the file
    ("unknown FS magic") at every retry, and the cell was never finalized."""
    realm, space = harness.new_names()
    await harness.space(realm, space, builtin=builtin)
    cell = await harness.cell(realm, space, builtin=builtin)
    assert isinstance(cell, CellAttachment)
    # What the crash left: its attachment gone with its record, the file without a namespace.
    await harness.networks.detach_cell(cell_id=cell.cell_id)
    cell.netns_path.touch()
    assert await harness.networks.detach_cell(cell_id=cell.cell_id)
    assert not cell.netns_path.exists()
    assert not await harness.networks.detach_cell(cell_id=cell.cell_id)


@pytest.mark.parametrize("record_lost", [False, True], ids=["recorded", "leased-only"])
async def test_a_kill_9_mid_attach_then_the_space_removed_leaves_nothing(
    harness: NetworkHarness, record_lost: bool
) -> None:
    """kukeond killed once the cell's veth is on the bridge; the space is deleted before the
    cell is attached again. Without its record (lost), the lease names the port."""
    realm, space = harness.new_names()
    status = await harness.space(realm, space, builtin=True)
    cell_id = harness.new_cell_id()
    harness.cells.append((cell_id, status.cni_config_path))
    await killed_in_a_child(harness, KILLED_MID_ATTACH, cell_id, str(status.cni_config_path))
    port = host_ifname(cell_id, "eth0")
    assert port in run("ip", "-o", "link", "show", "master", status.bridge_name).stdout
    if record_lost:
        harness.networks.records.path(cell_id).unlink()

    removal = await harness.networks.remove_space_network(
        realm=realm, space=space, cni_config_path=status.cni_config_path
    )
    assert removal.bridge_removed
    assert not await link_exists(port)
    await _assert_gone(harness, realm, space, status.bridge_name)


@pytest.fixture
def foreign_port(harness: NetworkHarness) -> Iterator[str]:
    with foreign_veth() as name:
        yield name


async def test_a_foreign_port_holds_the_whole_teardown_and_is_named(
    harness: NetworkHarness, foreign_port: str
) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space, builtin=True)
    cell = await harness.cell(realm, space, builtin=True)
    assert isinstance(cell, CellAttachment)
    bridge = status.bridge_name
    run("ip", "link", "set", foreign_port, "master", bridge, check=True)

    with pytest.raises(BridgeInUseError) as raised:
        await harness.networks.remove_space_network(
            realm=realm, space=space, cni_config_path=status.cni_config_path
        )
    assert raised.value.ports == (foreign_port,)
    assert foreign_port in str(raised.value)
    # Nothing went: the port is still filtered by the space's egress chain, and the subnet
    # record keeps the network a candidate of the orphan collector.
    assert await link_exists(bridge)
    assert bridge in (await harness.networks.egress.state()).bridges
    assert f"{realm}/{space}" in await harness.networks.subnets.assignments()
    assert status.cni_config_path.exists()
    assert not await link_exists(host_ifname(cell.cell_id, "eth0"))
    assert await link_exists(foreign_port), "a port kukeon did not make was removed"

    run("ip", "link", "set", foreign_port, "nomaster", check=True)
    removal = await harness.networks.remove_space_network(
        realm=realm, space=space, cni_config_path=status.cni_config_path
    )
    assert removal.bridge_removed
    await _assert_gone(harness, realm, space, bridge)


async def test_another_nodes_port_is_left_to_it(harness: NetworkHarness, foreign_port: str) -> None:
    """Nodes of a test fleet share the host's bridges: a port another node made (its alias
    says so) is neither removed nor waited for; that node removes the bridge after it."""
    realm, space = harness.new_names()
    status = await harness.space(realm, space, builtin=True)
    await harness.cell(realm, space, builtin=True)
    run("ip", "link", "set", foreign_port, "alias", "kukeon 0123456789ab", check=True)
    run("ip", "link", "set", foreign_port, "master", status.bridge_name, check=True)

    removal = await harness.networks.remove_space_network(
        realm=realm, space=space, cni_config_path=status.cni_config_path
    )
    assert not removal.bridge_removed
    assert removal.subnet_released
    assert list(await bridge_port_aliases(status.bridge_name)) == [foreign_port]


KILLED_MID_REMOVAL = """
import asyncio, os, signal, sys
from pathlib import Path
from kukeon.runtime.network import NetworkSettings, SpaceNetworks, space
from ipaddress import IPv4Network

async def die(name):
    os.kill(os.getpid(), signal.SIGKILL)

space.delete_link = die  # killed with the egress chain and the conflist gone, not the bridge
settings = NetworkSettings(
    state_dir=Path(sys.argv[1]), nft_table=sys.argv[2], subnet_pool=IPv4Network(sys.argv[3])
)
asyncio.run(
    SpaceNetworks(settings=settings).remove_space_network(
        realm=sys.argv[4], space=sys.argv[5], cni_config_path=Path(sys.argv[6])
    )
)
"""


async def test_a_kill_9_mid_removal_leaves_the_network_findable_and_removable(
    harness: NetworkHarness,
) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space, builtin=True)
    await harness.cell(realm, space, builtin=True)
    await killed_in_a_child(harness, KILLED_MID_REMOVAL, realm, space, str(status.cni_config_path))
    assert await link_exists(status.bridge_name)
    assert f"{realm}/{space}" in await harness.networks.subnets.assignments()

    removal = await harness.networks.remove_space_network(
        realm=realm, space=space, cni_config_path=status.cni_config_path
    )
    assert removal.bridge_removed
    await _assert_gone(harness, realm, space, status.bridge_name)


async def test_idle_bridges_of_spaces_gone_are_swept_and_no_other(harness: NetworkHarness) -> None:
    """What an earlier kukeond left (a bridge without its subnet record: the network was
    otherwise removed) goes, and an idle bridge this node made, each with its FORWARD
    accepts; a live space's bridge, one outside this node's pool, one with a port, one not
    named as kukeon names bridges and one another node made stay, and so do the accepts of
    a live space."""
    networks, settings = harness.networks, harness.settings
    subnets = list(settings.subnet_pool.subnets(new_prefix=28))
    realm, space = harness.new_names()
    live = await harness.space(realm, space, builtin=True)
    await harness.cell(realm, space, builtin=True)
    made: list[str] = []
    accepts = ForwardAccepts()  # made as a space's ensure makes them

    def bridge(name: str, address: IPv4Interface | None) -> str:
        run("ip", "link", "add", name, "type", "bridge", check=True)
        made.append(name)
        if address is not None:
            run("ip", "addr", "add", str(address), "dev", name, check=True)
        return name

    try:
        gone = [
            bridge(
                networks.bridge_of(*harness.new_names()), IPv4Interface(f"{subnets[-1 - i][1]}/28")
            )
            for i in range(2)
        ]
        elsewhere = bridge(networks.bridge_of(*harness.new_names()), None)
        kept = bridge(  # its space exists (another node of a fleet sharing the host uses it)
            networks.bridge_of(*harness.new_names()), IPv4Interface(f"{subnets[-7][1]}/28")
        )
        not_ours = bridge(f"kt{secrets.token_hex(4)}", IPv4Interface(f"{subnets[-3][1]}/28"))
        busy = bridge(
            networks.bridge_of(*harness.new_names()), IPv4Interface(f"{subnets[-4][1]}/28")
        )
        siblings = bridge(
            networks.bridge_of(*harness.new_names()), IPv4Interface(f"{subnets[-5][1]}/28")
        )
        run("ip", "link", "set", siblings, "alias", "kukeon 0123456789ab", check=True)
        mine = bridge(
            networks.bridge_of(*harness.new_names()), IPv4Interface(f"{subnets[-6][1]}/28")
        )
        run("ip", "link", "set", mine, "alias", harness.settings.port_alias, check=True)
        gone.append(mine)
        port = f"kf{secrets.token_hex(4)}"
        run("ip", "link", "add", port, "type", "veth", "peer", "name", f"{port}p", check=True)
        made.append(port)
        run("ip", "link", "set", port, "master", busy, check=True)

        orphan_chain = networks.bridge_of(*harness.new_names())
        made.append(orphan_chain)  # (no such link: its accepts are removed with the rest)
        await networks.egress.apply(
            bridge=orphan_chain,
            realm="gone",
            subnet=IPv4Network("10.99.3.0/24"),
            policy=EgressRuleset(default="deny"),
        )
        for name in (gone[0], orphan_chain, kept):
            await accepts.allow(name)
        asked: list[bool] = []

        async def spaces_that_exist() -> set[str]:
            asked.append(True)
            return {kept}

        removed = await networks.remove_idle_bridges(spaces_that_exist)
        assert asked
        assert sorted(removed) == sorted(
            [f"bridge {name}" for name in gone]
            + [f"egress chain of {orphan_chain}"]
            + [f"FORWARD accepts of {name}" for name in (gone[0], orphan_chain)]
        )
        marked = {bridge for bridge, _ in marked_rules(run("iptables", "-S", "FORWARD").stdout)}
        assert {gone[0], orphan_chain} & marked == set()
        assert {kept, live.bridge_name} <= marked
        assert (await networks.egress.state()).bridges == {live.bridge_name}
        for name in gone:
            assert not await link_exists(name)
        for name in (live.bridge_name, elsewhere, not_ours, busy, siblings, kept):
            assert await link_exists(name)

        # A control plane with an instance tag may share its pool's range with another
        # plane on the host: a bridge without an alias is not known to be its own.
        tagged_plane = SpaceNetworks(
            settings=replace(settings, instance="t", nft_table=f"{settings.nft_table}_none")
        )
        untagged = bridge(
            tagged_plane.bridge_of(*harness.new_names()), IPv4Interface(f"{subnets[-8][1]}/28")
        )
        assert await tagged_plane.remove_idle_bridges(spaces_that_exist) == []
        assert await link_exists(untagged)
    finally:
        for name in made:
            run("ip", "link", "del", name)
            await accepts.remove(name)
