"""The in-process bridge path without root: leases in host-local's format, the records, and
a fake netlink layer with faults injected where a kill -9 could stop an attachment."""

from __future__ import annotations

import json
import os
import shlex
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.runtime.network import NetworkSettings, SpaceNetworks, leases, veth
from kukeon.runtime.network.cni.config import (
    joined_conflist,
    render_space_conflist,
    write_conflist,
)
from kukeon.runtime.network.egress import parse_table_state, render_apply, render_remove
from kukeon.runtime.network.errors import HostInterfaceTakenError
from kukeon.runtime.network.forward import comment, forward_rules, marked_rules
from kukeon.runtime.network.inprocess import BridgeNetwork, InProcessAttachments
from kukeon.runtime.network.records import DRIVER_NETLINK, AttachmentRecords
from kukeon.runtime.network.veth import BridgePort, host_ifname
from tests.unit.runtime.test_network_joined import FakeCni, FakeNetns, _conflist

CELL = "kukeon_r_s_st_c"
SUBNET = IPv4Network("10.88.5.0/24")


class Crash(BaseException):
    """A kill -9 as seen from the code under test: nothing after it runs."""


class FakeLinks:
    """The host's links as a dict; ``fail_*`` inject a fault at that step."""

    def __init__(self) -> None:
        self.ports: dict[str, BridgePort] = {}
        self.made = 0
        self.fail_make_after_pair = False
        self.fail_remove = False
        self.broken: set[str] = set()

    def make_port(self, port: BridgePort) -> None:
        self.ports.pop(port.host_ifname, None)  # a leftover of the same name is deleted first
        self.ports[port.host_ifname] = port  # the pair exists from here on
        self.made += 1
        if self.fail_make_after_pair:
            raise Crash("killed between the veth pair and the address")
        self.broken.discard(port.host_ifname)

    def problems(self, port: BridgePort) -> list[str]:
        if port.host_ifname not in self.ports or port.host_ifname in self.broken:
            return [f"{port.host_ifname} is missing"]
        return []

    def remove_port(self, name: str) -> bool:
        if self.fail_remove:
            raise Crash("killed during the undo")
        return self.ports.pop(name, None) is not None

    def carries(self, netns: Path, ifname: str, address: IPv4Interface) -> bool:
        return True


class FollowedLeases:
    """An ``NftEgress`` that only notes which bridges' leases it was told to follow (the
    real one runs nft on the host's ``inet kukeon`` table)."""

    def __init__(self) -> None:
        self.bridges: list[str] = []

    async def follow_leases(self, *, bridge: str, leases: Path) -> None:
        self.bridges.append(bridge)


def _network(tmp_path: Path) -> tuple[BridgeNetwork, object]:
    conflist = render_space_conflist(
        network_name="kk-r-s", bridge="kk-r-s", subnet=SUBNET, ipam_data_dir=tmp_path / "ipam"
    )
    network = BridgeNetwork.of(conflist)
    assert network is not None
    return network, conflist


async def _attach(
    attachments: InProcessAttachments, tmp_path: Path, cell: str = CELL
) -> IPv4Address:
    network, conflist = _network(tmp_path)
    record = await attachments.attach(
        cell_id=cell,
        netns=tmp_path / "netns" / cell,
        ifname="eth0",
        conflist=conflist,  # type: ignore[arg-type]
        network=network,
    )
    ip = record.result.first_ipv4()
    assert ip is not None
    assert isinstance(ip.address, IPv4Interface)
    return ip.address.ip


def test_the_rendered_network_is_done_in_process_a_foreign_one_is_not(tmp_path: Path) -> None:
    network, conflist = _network(tmp_path)
    assert (network.bridge, network.subnet, network.gateway) == ("kk-r-s", SUBNET, SUBNET[1])
    assert network.default_route
    assert network.hairpin
    assert network.ipam_dir == tmp_path / "ipam" / "kk-r-s"
    joined = BridgeNetwork.of(joined_conflist(conflist))  # type: ignore[arg-type]
    assert joined is not None
    assert not joined.default_route
    macvlan = render_space_conflist(
        network_name="m", bridge="m", subnet=SUBNET, ipam_data_dir=tmp_path
    )
    foreign = type(macvlan)(
        name="m", cni_version="1.0.0", plugins=({"type": "macvlan", "master": "eth0"},)
    )
    assert BridgeNetwork.of(foreign) is None
    dhcp = dict(macvlan.plugins[0], ipam={"type": "dhcp"})
    assert BridgeNetwork.of(type(macvlan)(name="m", cni_version="1.0.0", plugins=(dhcp,))) is None


def test_leases_use_host_locals_format_skip_the_gateway_and_are_kept(tmp_path: Path) -> None:
    directory = tmp_path / "kk-r-s"
    first = leases.lease(directory, subnet=SUBNET, gateway=SUBNET[1], owner="a", ifname="eth0")
    second = leases.lease(directory, subnet=SUBNET, gateway=SUBNET[1], owner="b", ifname="eth0")
    assert (first, second) == (SUBNET[2], SUBNET[3])
    assert (directory / str(first)).read_bytes() == b"a\r\neth0"
    assert (directory / leases.LAST_RESERVED).read_text() == str(second)
    for name in (str(first), leases.LAST_RESERVED, leases.LOCK_FILE):
        assert (directory / name).stat().st_mode & 0o777 == 0o600, name
    # The same owner and interface get the address they hold (a restart, a second pass).
    assert (
        leases.lease(directory, subnet=SUBNET, gateway=SUBNET[1], owner="a", ifname="eth0") == first
    )
    # A lease CNI's host-local wrote before the upgrade is never handed out again.
    (directory / str(SUBNET[4])).write_text("old-cni-cell\r\neth0")
    third = leases.lease(directory, subnet=SUBNET, gateway=SUBNET[1], owner="c", ifname="eth0")
    assert third == SUBNET[5]
    assert leases.release(directory, "a", "eth0") == [first]
    assert leases.release_everywhere(tmp_path, "c") == [("kk-r-s", "eth0", third)]
    assert leases.owned(directory, "old-cni-cell", "eth0") == [SUBNET[4]]


def test_a_lease_is_never_seen_empty_and_a_killed_writers_leftovers_go(tmp_path: Path) -> None:
    """kill -9 between creating a lease file and writing it left it empty for good (an
    address nobody owns, never released; test_crash_recovery saw one in CI)."""
    directory = tmp_path / "kk-r-s"
    directory.mkdir()
    (directory / str(SUBNET[2])).write_text("")  # an earlier writer, killed
    (directory / f"{leases.RESERVING}{SUBNET[3]}").write_text("half")  # one killed aside
    real_link = os.link
    seen: list[str] = []

    def link(source: Any, target: Any) -> None:
        seen.append(Path(source).read_bytes().decode())  # there before the name
        real_link(source, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "link", link)
        address = leases.lease(
            directory, subnet=SUBNET, gateway=SUBNET[1], owner="a", ifname="eth0"
        )
    assert address == SUBNET[2], "the empty lease's address is free again"
    assert seen == ["a\r\neth0"]
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [str(SUBNET[2]), leases.LAST_RESERVED, leases.LOCK_FILE]
    )


def test_a_full_subnet_is_refused(tmp_path: Path) -> None:
    tiny = IPv4Network("10.9.9.0/30")  # .1 gateway, .2 the only cell address
    leases.lease(tmp_path, subnet=tiny, gateway=tiny[1], owner="a", ifname="eth0")
    with pytest.raises(leases.AddressPoolExhaustedError):
        leases.lease(tmp_path, subnet=tiny, gateway=tiny[1], owner="b", ifname="eth0")


async def test_attach_is_recorded_verified_cheaply_and_repaired(tmp_path: Path) -> None:
    links = FakeLinks()
    records = AttachmentRecords(tmp_path / "attachments")
    attachments = InProcessAttachments(records=records, links=links)
    address = await _attach(attachments, tmp_path)
    assert address == SUBNET[2]
    record = await records.load(CELL)
    assert record is not None
    assert record.driver == DRIVER_NETLINK
    # A second pass (and a new daemon on the same state: a restart) reads, makes nothing.
    again = InProcessAttachments(records=records, links=links)
    assert await _attach(again, tmp_path) == address
    assert links.made == 1
    # Drift: made again with the same address.
    links.broken.add(host_ifname(CELL, "eth0"))
    assert await _attach(again, tmp_path) == address
    assert links.made == 2
    await again.detach(record)
    assert links.ports == {}
    assert await records.load(CELL) is None
    assert leases.owned(tmp_path / "ipam" / "kk-r-s", CELL, "eth0") == []


async def test_a_kill_mid_attach_leaves_nothing_that_blocks_the_next(tmp_path: Path) -> None:
    """Fault injected at the netlink layer: the veth pair exists, the address is leased and
    recorded, and the undo dies too (as after a kill -9, nothing cleans up)."""
    links = FakeLinks()
    records = AttachmentRecords(tmp_path / "attachments")
    links.fail_make_after_pair = True
    links.fail_remove = True
    with pytest.raises(Crash):
        await _attach(InProcessAttachments(records=records, links=links), tmp_path)
    assert host_ifname(CELL, "eth0") in links.ports
    # The next daemon: the same cell attaches with the same address over the leftover link,
    # another cell is not blocked, and nothing is left twice.
    links.fail_make_after_pair = links.fail_remove = False
    restarted = InProcessAttachments(records=records, links=links)
    assert await _attach(restarted, tmp_path) == SUBNET[2]
    assert await _attach(restarted, tmp_path, "kukeon_r_s_st_d") == SUBNET[3]
    assert sorted(links.ports) == sorted(
        [host_ifname(CELL, "eth0"), host_ifname("kukeon_r_s_st_d", "eth0")]
    )


async def test_the_record_is_durable_once_the_attach_returns(tmp_path: Path) -> None:
    """A restart keeps every cell's address: the record is on disk when the attachment is
    handed back."""
    links = FakeLinks()
    records = AttachmentRecords(tmp_path / "attachments")
    address = await _attach(InProcessAttachments(records=records, links=links), tmp_path)
    stored = json.loads(records.path(CELL).read_text(encoding="utf-8"))
    assert stored["result"]["ips"][0]["address"] == f"{address}/{SUBNET.prefixlen}"
    assert stored["driver"] == DRIVER_NETLINK


async def test_a_kill_between_lease_and_record_is_cleaned_by_the_detach(tmp_path: Path) -> None:
    links = FakeLinks()
    attachments = InProcessAttachments(records=AttachmentRecords(tmp_path / "a"), links=links)
    directory = tmp_path / "ipam" / "kk-r-s"
    leases.lease(directory, subnet=SUBNET, gateway=SUBNET[1], owner=CELL, ifname="eth0")
    links.ports[host_ifname(CELL, "eth0")] = _network(tmp_path)[0].port(
        tmp_path, CELL, "eth0", SUBNET[2]
    )
    assert await attachments.remove_leftovers(CELL, tmp_path / "ipam")
    assert links.ports == {}
    assert leases.owned(directory, CELL, "eth0") == []
    assert not await attachments.remove_leftovers(CELL, tmp_path / "ipam")


def test_masquerade_goes_in_the_space_transaction_and_leaves_with_it() -> None:
    batch = render_apply(
        table="t",
        bridge="kk-r-s",
        realm="r",
        subnet=SUBNET,
        default="allow",
        rules=(),
        masquerade=True,
    )
    chains = [c["add"]["chain"] for c in batch["nftables"] if "chain" in c.get("add", {})]
    nat = next(c for c in chains if c["name"] == "masquerade")
    assert (nat["type"], nat["hook"], nat["prio"]) == ("nat", "postrouting", 100)
    rule = next(
        c["add"]["rule"]
        for c in batch["nftables"]
        if c.get("add", {}).get("rule", {}).get("chain") == "masq-kk-r-s"
    )
    assert {"masquerade": None} in rule["expr"]
    assert "masquerade" not in str(
        render_apply(table="t", bridge="b", realm="r", subnet=SUBNET, default="allow", rules=())
    )
    listing = {
        "nftables": [
            {"map": {"name": "egress_bridges", "elem": [["kk-r-s", {}], ["kk-r-o", {}]]}},
            {"map": {"name": "masquerade_bridges", "elem": [["kk-r-s", {}]]}},
            {"chain": {"name": "egress-kk-r-s"}},
            {"chain": {"name": "egress-kk-r-o"}},
            {"chain": {"name": "masq-kk-r-s"}},
        ]
    }
    removal = render_remove(table="t", bridge="kk-r-s", state=parse_table_state(listing))
    assert removal is not None
    deleted = [c["delete"] for c in removal["nftables"] if "delete" in c]
    assert {
        "element": {
            "family": "inet",
            "table": "t",
            "name": "masquerade_bridges",
            "elem": ["kk-r-s"],
        }
    } in deleted
    assert {"chain": {"family": "inet", "table": "t", "name": "masq-kk-r-s"}} in deleted


def test_forward_accepts_are_marked_with_the_bridge() -> None:
    rules = forward_rules("kk-r-s")
    assert rules[0][:2] == ["-i", "kk-r-s"]
    assert rules[1][:2] == ["-o", "kk-r-s"]
    assert "RELATED,ESTABLISHED" in rules[1]
    assert all(rule[-2:] == ["-j", "ACCEPT"] and comment("kk-r-s") in rule for rule in rules)


def test_marked_rules_are_read_from_the_forward_listing() -> None:
    """Each rule ``iptables -S FORWARD`` prints with a ``kukeon <bridge>`` comment, as the
    specification ``-D FORWARD`` takes; the chain's policy and other rules are not."""
    listing = "\n".join(
        [
            "-P FORWARD DROP",
            *(f"-A FORWARD {shlex.join(rule)}" for rule in forward_rules("k-r7s1-emgjhfur")),
            '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
            '-A FORWARD -i docker0 -m comment --comment "kukeonish" -j ACCEPT',
            '-A CNI-FORWARD -m comment --comment "kukeon kk-r-s" -j ACCEPT',
        ]
    )
    assert marked_rules(listing) == [
        ("k-r7s1-emgjhfur", rule) for rule in forward_rules("k-r7s1-emgjhfur")
    ]


async def test_a_cni_config_set_later_replaces_the_in_process_interface(tmp_path: Path) -> None:
    """The root container's cniConfigPath set on a cell attached in-process: the interface
    made here goes (link, lease, record) before the plugins make theirs; a conflist that
    cannot be read keeps what is recorded."""
    cni, links, egress = FakeCni(), FakeLinks(), FollowedLeases()
    networks = SpaceNetworks(
        settings=NetworkSettings(state_dir=tmp_path / "state", include_firewall=False),
        cni=cast(Any, cni),
        netns=cast(Any, FakeNetns(tmp_path / "netns")),
        egress=cast(Any, egress),
        links=links,
    )
    space, own = tmp_path / "space.conflist", tmp_path / "own.conflist"
    await write_conflist(space, _network(tmp_path)[1])  # type: ignore[arg-type]
    first = await networks.attach_cell(cell_id=CELL, cni_config_path=space, builtin=True)
    assert first.ip == SUBNET[2]
    assert cni.calls == []
    missing = tmp_path / "missing.conflist"
    kept = await networks.attach_cell(cell_id=CELL, cni_config_path=missing, builtin=True)
    assert kept.ip == first.ip
    await write_conflist(own, _conflist("mine", "10.99.0.0/24", tmp_path))
    moved = await networks.attach_cell(cell_id=CELL, cni_config_path=own)
    assert (moved.network_name, str(moved.address)) == ("mine", "10.99.0.2/24")
    assert links.ports == {}
    assert leases.owned(tmp_path / "ipam" / "kk-r-s", CELL, "eth0") == []
    assert ("ADD", "mine", "eth0") in cni.calls
    assert set(egress.bridges) == {"kk-r-s"}  # its lease taken, then released


async def test_an_interface_whose_host_end_another_cell_has_gets_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host ends are ``veth`` and 44 bits of a hash of the cell's id: a tenant can name a
    cell whose host end is another realm's cell's. Making its port deleted that cell's link
    first (a leftover of the same name, as far as it knew): the other cell was off its
    network. Now the second cell gets no lease, record or link, and the first keeps its."""
    monkeypatch.setattr(veth, "host_ifname", lambda cell_id, ifname: "veth0123456789a")
    links = FakeLinks()
    attachments = InProcessAttachments(records=AttachmentRecords(tmp_path / "rec"), links=links)
    victim, evil = "kukeon_victim_s_st_c", "kukeon_evil_s_st_c"
    address = await _attach(attachments, tmp_path, cell=victim)
    with pytest.raises(HostInterfaceTakenError) as refused:
        await _attach(attachments, tmp_path, cell=evil)
    assert "veth0123456789a" in str(refused.value)
    assert "victim" not in str(refused.value)
    assert links.made == 1
    assert links.ports["veth0123456789a"].netns == tmp_path / "netns" / victim
    assert await attachments.records.attached() == [(victim, "eth0")]
    assert leases.holders(tmp_path / "ipam" / "kk-r-s") == {(victim, "eth0")}
    assert await _attach(attachments, tmp_path, cell=victim) == address  # its own, as it was
    assert links.made == 1
