"""Cells attached to one space's bridge reach each other and the gateway; CNI's lifecycle."""

from __future__ import annotations

import json
from ipaddress import IPv4Address

import pytest

from kukeon.runtime.network import CellAttachment, bridge_name, link_exists
from kukeon.runtime.network.cni_leftovers import masquerade_chain_name
from tests.integration.network.conftest import NetworkHarness, ping, run

pytestmark = pytest.mark.integration


async def test_two_cells_ping_each_other_and_the_gateway(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space)
    assert status.bridge_name == bridge_name(realm, space, harness.settings.instance)
    assert status.subnet.subnet_of(harness.settings.subnet_pool)
    assert status.gateway == status.subnet.network_address + 1
    conflist = json.loads(status.cni_config_path.read_text())
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "firewall"]

    first = await harness.cell(realm, space)
    second = await harness.cell(realm, space)
    assert isinstance(first, CellAttachment)
    assert isinstance(second, CellAttachment)
    assert first.ip != second.ip
    assert first.ip in status.subnet
    assert second.ip in status.subnet
    assert first.gateway == status.gateway
    assert first.bridge_name == status.bridge_name
    assert await link_exists(status.bridge_name)

    for source, target in ((first, second.ip), (second, first.ip), (first, status.gateway)):
        code, output = await ping(source.netns_path, target)
        assert code == 0, output
    code, output = await ping(second.netns_path, "127.0.0.1")
    assert code == 0, f"loopback is not up in the cell: {output}"


async def test_check_after_add_and_attach_is_idempotent(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    await harness.space(realm, space)
    cell_id = harness.new_cell_id()
    attached = await harness.cell(realm, space, cell_id)
    assert isinstance(attached, CellAttachment)

    checked = await harness.networks.check_cell(cell_id=cell_id)
    assert checked is not None
    assert checked.ip == attached.ip

    again = await harness.networks.attach_cell(
        cell_id=cell_id, cni_config_path=harness.conflist_path(realm, space)
    )
    assert again.ip == attached.ip


async def test_del_releases_the_ipam_lease(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space)
    cell_id = harness.new_cell_id()
    attached = await harness.cell(realm, space, cell_id)
    assert isinstance(attached, CellAttachment)
    lease = harness.settings.ipam_dir / status.network_name / str(attached.ip)
    assert lease.read_text().strip().startswith(cell_id)

    assert await harness.networks.detach_cell(cell_id=cell_id)
    assert not lease.exists()
    assert not await harness.networks.netns.exists(cell_id)
    # DEL is idempotent: a second detach finds nothing and does not fail.
    assert not await harness.networks.detach_cell(
        cell_id=cell_id, cni_config_path=status.cni_config_path
    )


async def test_reattach_after_the_namespace_vanished_gets_a_working_address(
    harness: NetworkHarness,
) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space)
    cell_id = harness.new_cell_id()
    await harness.cell(realm, space, cell_id)
    await harness.networks.netns.remove(cell_id)  # drift: somebody removed the namespace

    again = await harness.networks.attach_cell(
        cell_id=cell_id, cni_config_path=status.cni_config_path
    )
    code, output = await ping(again.netns_path, status.gateway)
    assert code == 0, output
    leases = {
        p.name
        for p in (harness.settings.ipam_dir / status.network_name).iterdir()
        if p.name[0].isdigit() and not p.name.startswith("last_")
    }
    assert leases == {str(again.ip)}, "the lost attachment's lease was not released"
    assert isinstance(again.ip, IPv4Address)

    await harness.networks.detach_cell(cell_id=cell_id)
    chain = masquerade_chain_name(status.network_name, cell_id)
    nat = run("iptables", "-t", "nat", "-S").stdout
    assert chain not in nat, "the bridge plugin's masquerade chain was left behind"


async def test_detach_after_the_namespace_and_record_vanished(harness: NetworkHarness) -> None:
    realm, space = harness.new_names()
    status = await harness.space(realm, space)
    cell_id = harness.new_cell_id()
    attached = await harness.cell(realm, space, cell_id)
    assert isinstance(attached, CellAttachment)
    await harness.networks.netns.remove(cell_id)
    (harness.settings.attachments_dir / f"{cell_id}.json").unlink()

    await harness.networks.detach_cell(cell_id=cell_id, cni_config_path=status.cni_config_path)
    lease = harness.settings.ipam_dir / status.network_name / str(attached.ip)
    assert not lease.exists()
    nat = run("iptables", "-t", "nat", "-S").stdout
    assert masquerade_chain_name(status.network_name, cell_id) not in nat
    firewall = run("iptables", "-S").stdout
    assert f"{attached.ip}/32" not in firewall, "the firewall plugin's rules were left behind"
