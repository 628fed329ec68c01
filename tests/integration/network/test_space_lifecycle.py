"""Creating and removing spaces (with a cell each) leaves nothing on the host."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.runtime.network import CellAttachment, EgressRule, EgressRuleset, bridge_name
from kukeon.runtime.network.cni_leftovers import masquerade_chain_name
from tests.integration.network.conftest import NetworkHarness, run

pytestmark = pytest.mark.integration

ROUNDS = 20


async def test_twenty_spaces_created_and_removed_leave_nothing(harness: NetworkHarness) -> None:
    networks = harness.networks
    seen: list[tuple[str, str, str, str]] = []  # realm, space, cell id, subnet
    for round_index in range(ROUNDS):
        realm, space = harness.new_names()
        policy = (
            EgressRuleset(default="deny", rules=(EgressRule(host="localhost", ports=(53,)),))
            if round_index % 2
            else EgressRuleset(default="allow")
        )
        status = await harness.space(realm, space, policy)
        cell_id = harness.new_cell_id()
        cell = await harness.cell(realm, space, cell_id)
        assert isinstance(cell, CellAttachment)
        seen.append((realm, space, cell_id, str(status.subnet)))

        assert await networks.detach_cell(cell_id=cell_id)
        removal = await networks.remove_space_network(
            realm=realm, space=space, cni_config_path=status.cni_config_path
        )
        assert removal.bridge_removed
        assert removal.egress_removed
        assert removal.subnet_released
        assert removal.conflist_removed
        assert removal.ipam_dir_removed

    links = run("ip", "-o", "link", "show").stdout
    netns = set(run("ip", "netns", "list").stdout.split())
    nat = run("iptables", "-t", "nat", "-S").stdout
    filter_rules = run("iptables", "-S").stdout
    for realm, space, cell_id, subnet in seen:
        bridge = bridge_name(realm, space, harness.settings.instance)
        assert f" {bridge}:" not in links, f"bridge {bridge} left behind"
        assert cell_id not in netns, f"netns {cell_id} left behind"
        assert masquerade_chain_name(bridge, cell_id) not in nat
        assert subnet.rsplit(".", 1)[0] + "." not in nat + filter_rules
    tables = run("nft", "list", "tables").stdout
    assert harness.settings.nft_table not in tables
    leftovers = [
        p
        for p in harness.settings.network_dir.rglob("*")
        if p.is_file() and p.name != "subnets.json"
    ]
    assert {p.name for p in leftovers} <= {"subnets.json.lock"}, leftovers
    assert await networks.subnets.assignments() == {}
    assert not any((harness.settings.state_dir / "cni").glob("*.conflist"))


async def test_concurrent_spaces_and_cells_get_distinct_addresses(harness: NetworkHarness) -> None:
    names = [harness.new_names() for _ in range(3)]
    statuses = await asyncio.gather(
        *(harness.space(realm, space, EgressRuleset(default="deny")) for realm, space in names)
    )
    assert len({s.subnet for s in statuses}) == 3
    assert len({s.bridge_name for s in statuses}) == 3
    realm, space = names[0]
    cells = await asyncio.gather(*(harness.cell(realm, space) for _ in range(4)))
    addresses = {c.ip for c in cells if isinstance(c, CellAttachment)}
    assert len(addresses) == 4
    assert all(a in statuses[0].subnet for a in addresses)
    state = await harness.networks.egress.state()
    assert state.bridges == {s.bridge_name for s in statuses}
