"""Cells on a space's bridge attached by kukeond over netlink (no CNI plugin): reachability,
a restart keeping the address, drift repaired, a kill -9 mid-attach, cells CNI attached
before the upgrade kept and detached."""

from __future__ import annotations

import asyncio
import json
from ipaddress import IPv4Interface

import pytest

from kukeon.runtime.network import CellAttachment, SpaceNetworks, link_exists, veth
from kukeon.runtime.network.cni_leftovers import masquerade_chain_name
from kukeon.runtime.network.records import DRIVER_CNI, DRIVER_NETLINK
from kukeon.runtime.network.veth import BridgePort, host_ifname
from tests.integration.network.conftest import (
    KILLED_MID_ATTACH,
    NetworkHarness,
    killed_in_a_child,
    ping,
    run,
)

pytestmark = pytest.mark.integration


def _leases(harness: NetworkHarness, network: str) -> set[str]:
    directory = harness.settings.ipam_dir / network
    return (
        {p.name for p in directory.iterdir() if p.name[0].isdigit()}
        if directory.is_dir()
        else set()
    )


async def test_cells_reach_each_other_the_gateway_and_loopback(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space, builtin=True)
    first = await harness.cell(realm, space, builtin=True)
    second = await harness.cell(realm, space, builtin=True)
    assert isinstance(first, CellAttachment)
    assert isinstance(second, CellAttachment)
    assert {first.ip, second.ip} == {status.subnet[2], status.subnet[3]}
    assert (first.gateway, first.bridge_name) == (status.gateway, status.bridge_name)
    for source, target in ((first, second.ip), (second, first.ip), (first, status.gateway)):
        code, output = await ping(source.netns_path, target)
        assert code == 0, output
    code, output = await ping(second.netns_path, "127.0.0.1")
    assert code == 0, output
    record = await harness.networks.records.load(first.cell_id)
    assert record is not None
    assert record.driver == DRIVER_NETLINK
    assert _leases(harness, status.network_name) == {str(first.ip), str(second.ip)}
    # The space's masquerade is in its nft table, not a CNI chain per cell in iptables.
    table = run("nft", "list", "table", "inet", harness.settings.nft_table).stdout
    assert f"masq-{status.bridge_name}" in table
    assert f"ip saddr {status.subnet}" in table
    assert (
        masquerade_chain_name(status.network_name, first.cell_id)
        not in run("iptables", "-t", "nat", "-S").stdout
    )

    assert await harness.networks.detach_cell(cell_id=first.cell_id)
    assert not await link_exists(host_ifname(first.cell_id, "eth0"))
    assert not await harness.networks.netns.exists(first.cell_id)
    assert _leases(harness, status.network_name) == {str(second.ip)}
    assert not await harness.networks.detach_cell(cell_id=first.cell_id)

    # The firewall plugin's FORWARD accepts, once per space; gone with the space.
    assert f'"kukeon {status.bridge_name}"' in run("iptables", "-S", "FORWARD").stdout
    assert await harness.networks.detach_cell(cell_id=second.cell_id)
    await harness.networks.remove_space_network(
        realm=realm, space=space, cni_config_path=status.cni_config_path
    )
    assert status.bridge_name not in run("iptables", "-S", "FORWARD").stdout
    assert "masq-" not in run("nft", "list", "table", "inet", harness.settings.nft_table).stdout


async def test_a_restart_keeps_the_address_and_drift_is_repaired(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space, builtin=True)
    attached = await harness.cell(realm, space, builtin=True)
    assert isinstance(attached, CellAttachment)
    index = run("cat", f"/sys/class/net/{host_ifname(attached.cell_id, 'eth0')}/ifindex").stdout
    restarted = SpaceNetworks(settings=harness.settings)
    again = await restarted.attach_cell(
        cell_id=attached.cell_id, cni_config_path=status.cni_config_path, builtin=True
    )
    assert again.ip == attached.ip
    after = run("cat", f"/sys/class/net/{host_ifname(attached.cell_id, 'eth0')}/ifindex").stdout
    assert after == index, "a standing attachment was made again"
    # Drift: the address removed inside the namespace; the next pass puts it back.
    netns = attached.netns_path.name
    run("ip", "netns", "exec", netns, "ip", "addr", "flush", "dev", "eth0", check=True)
    repaired = await restarted.attach_cell(
        cell_id=attached.cell_id, cni_config_path=status.cni_config_path, builtin=True
    )
    assert repaired.ip == attached.ip
    code, output = await ping(repaired.netns_path, status.gateway)
    assert code == 0, output


async def test_a_kill_9_mid_attach_leaves_nothing_in_the_way(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space, builtin=True)
    cell_id = harness.new_cell_id()
    harness.cells.append((cell_id, status.cni_config_path))
    await killed_in_a_child(harness, KILLED_MID_ATTACH, cell_id, str(status.cni_config_path))
    assert await link_exists(host_ifname(cell_id, "eth0")), "the fault came too early"

    attached = await harness.networks.attach_cell(
        cell_id=cell_id, cni_config_path=status.cni_config_path, builtin=True
    )
    code, output = await ping(attached.netns_path, status.gateway)
    assert code == 0, output
    assert _leases(harness, status.network_name) == {str(attached.ip)}
    await harness.networks.detach_cell(cell_id=cell_id)
    assert not await link_exists(host_ifname(cell_id, "eth0"))
    assert _leases(harness, status.network_name) == set()
    assert await harness.networks.records.load(cell_id) is None


async def test_a_cell_cni_attached_before_the_upgrade_is_kept_and_detached(
    harness: NetworkHarness,
) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space)
    old = await harness.cell(realm, space)  # by the CNI plugins, as before the upgrade
    assert isinstance(old, CellAttachment)
    await harness.space(realm, space, builtin=True)
    kept = await harness.networks.attach_cell(
        cell_id=old.cell_id, cni_config_path=status.cni_config_path, builtin=True
    )
    assert kept.ip == old.ip
    record = await harness.networks.records.load(old.cell_id)
    assert record is not None
    assert record.driver == DRIVER_CNI
    new = await harness.cell(realm, space, builtin=True)
    assert isinstance(new, CellAttachment)
    assert new.ip != old.ip
    code, output = await ping(new.netns_path, old.ip)
    assert code == 0, output
    assert await harness.networks.detach_cell(cell_id=old.cell_id)
    assert _leases(harness, status.network_name) == {str(new.ip)}
    nat = run("iptables", "-t", "nat", "-S").stdout
    assert masquerade_chain_name(status.network_name, old.cell_id) not in nat


async def test_a_port_is_made_as_the_bridge_plugin_made_it_and_made_again_over_a_leftover(
    harness: NetworkHarness,
) -> None:
    """``veth.make_port``: the host end a port of the bridge, up, hairpin on, with the
    network's MTU; inside, ``lo`` and the interface up, the address and the default route;
    made again over the same names (a repair, a retry after a crash)."""
    cell_id = harness.new_cell_id()
    netns = await harness.networks.netns.create(cell_id)
    harness.cells.append((cell_id, harness.settings.state_dir / "none.conflist"))
    subnet = next(harness.settings.subnet_pool.subnets(new_prefix=24))
    port = BridgePort(
        netns=netns,
        ifname="eth0",
        host_ifname=host_ifname(cell_id, "eth0"),
        bridge=f"kt-{harness.suffix}",
        address=IPv4Interface(f"{subnet[2]}/24"),
        gateway=subnet[1],
        mtu=1400,
    )
    try:
        for _ in range(2):
            await asyncio.to_thread(veth.make_port, port)
            assert await asyncio.to_thread(veth.problems, port) == []
            host = json.loads(run("ip", "-j", "-d", "link", "show", port.host_ifname).stdout)[0]
            # Up as set (flags); its operstate follows the peer's carrier later (the kernel's
            # link watch is deferred: 7 of 30 still read "down" right after a make).
            assert (host["master"], host["mtu"]) == (port.bridge, 1400)
            assert "UP" in host["flags"]
            assert host["linkinfo"]["info_slave_data"]["hairpin"] is True
            # Forwarding once made: the port joins disabled, and a ping right after a make
            # once lost its ARP to that (a CI run of stop 39).
            assert host["linkinfo"]["info_slave_data"]["state"] == "forwarding"
            inner = json.loads(run("ip", "-n", netns.name, "-j", "link", "show").stdout)
            assert {(i["ifname"], i.get("mtu")) for i in inner} == {("lo", 65536), ("eth0", 1400)}
            assert all("UP" in i["flags"] for i in inner)
            route = run("ip", "-n", netns.name, "-4", "route", "show", "default").stdout
            assert f"via {subnet[1]} dev eth0" in route
            code, output = await ping(netns, subnet[1])
            assert code == 0, output
    finally:
        run("ip", "link", "del", port.bridge)
