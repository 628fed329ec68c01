"""A cell's further interfaces (the spaces its `networks` join) and their records, without
root: the CNI runtime and the netns manager are fakes that record what they were asked."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, cast

from kukeon.runtime.network import NetworkSettings, SpaceNetworks
from kukeon.runtime.network.cni.config import (
    NetworkConfigList,
    joined_conflist,
    render_space_conflist,
    write_conflist,
)
from kukeon.runtime.network.cni.invoke import RuntimeConf
from kukeon.runtime.network.cni.result import CniResult, parse_result
from kukeon.runtime.network.records import AttachmentRecords

CELL = "kukeon_r_a_st_c"


def _conflist(name: str, subnet: str, tmp: Path) -> NetworkConfigList:
    return render_space_conflist(
        network_name=name, bridge=name, subnet=IPv4Network(subnet), ipam_data_dir=tmp / "ipam"
    )


def test_a_joined_conflist_has_no_default_route() -> None:
    space = _conflist("kk-r-b", "10.88.7.0/24", Path("/ipam"))
    joined = joined_conflist(space)
    assert joined.name == space.name
    bridge = joined.plugins[0]
    assert bridge["type"] == "bridge"
    assert bridge["isDefaultGateway"] is False
    assert bridge["ipam"]["routes"] == []
    # Everything else as the space's own cells have it (the same leases, bridge, subnet).
    assert bridge["ipam"]["ranges"] == space.plugins[0]["ipam"]["ranges"]
    assert bridge["bridge"] == "kk-r-b"
    assert joined.plugins[1:] == space.plugins[1:]
    # The space's conflist itself is untouched.
    assert space.plugins[0]["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]


class FakeCni:
    """Hands out .2 of each network's subnet, remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def require_plugins(self, conflist: NetworkConfigList) -> dict[str, Path]:
        return {}

    async def add(self, conflist: NetworkConfigList, conf: RuntimeConf) -> CniResult:
        self.calls.append(("ADD", conflist.name, conf.ifname))
        if conflist.name == "kukeon-loopback":
            return parse_result({"cniVersion": "1.0.0"})
        ranges = conflist.plugins[0]["ipam"]["ranges"]
        subnet = IPv4Network(ranges[0][0]["subnet"])
        return parse_result(
            {
                "cniVersion": "1.0.0",
                "interfaces": [{"name": conf.ifname, "sandbox": str(conf.netns)}],
                "ips": [{"address": f"{subnet.network_address + 2}/24", "interface": 0}],
            }
        )

    async def check(self, conflist: NetworkConfigList, conf: RuntimeConf, result: Any) -> None:
        self.calls.append(("CHECK", conflist.name, conf.ifname))

    async def delete(self, conflist: NetworkConfigList, conf: RuntimeConf, result: Any) -> None:
        self.calls.append(("DEL", conflist.name, conf.ifname))


class FakeNetns:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name

    async def create(self, name: str) -> Path:
        return self.root / name

    async def remove(self, name: str) -> bool:
        return True

    async def drop_unbound(self, name: str) -> bool:
        return False


class StandingLinks:
    """Every CNI-made interface still carries its address (no drift)."""

    def carries(self, netns: Path, ifname: str, address: object) -> bool:
        return True


def _networks(tmp_path: Path, *, check_seconds: float = 300.0) -> tuple[SpaceNetworks, FakeCni]:
    settings = NetworkSettings(
        state_dir=tmp_path / "state", include_firewall=False, cni_check_seconds=check_seconds
    )
    cni = FakeCni()
    networks = SpaceNetworks(
        settings=settings,
        cni=cast(Any, cni),
        netns=cast(Any, FakeNetns(tmp_path / "netns")),
        links=cast(Any, StandingLinks()),
    )
    return networks, cni


async def test_join_leave_and_detach_every_interface(tmp_path: Path) -> None:
    networks, cni = _networks(tmp_path)
    own, other = tmp_path / "a.conflist", tmp_path / "b.conflist"
    await write_conflist(own, _conflist("kk-r-a", "10.88.1.0/24", tmp_path))
    await write_conflist(other, _conflist("kk-r-b", "10.88.2.0/24", tmp_path))

    first = await networks.attach_cell(cell_id=CELL, cni_config_path=own)
    joined = await networks.join_network(cell_id=CELL, cni_config_path=other, ifname="eth1")
    assert (first.ifname, str(first.address)) == ("eth0", "10.88.1.2/24")
    assert (joined.ifname, str(joined.address), joined.bridge_name) == (
        "eth1",
        "10.88.2.2/24",
        "kk-r-b",
    )
    records = networks.settings.attachments_dir
    # The first interface's record where it always was; the others one directory down, so
    # the orphan collector's `*.json` still lists one record per cell.
    assert sorted(p.name for p in records.glob("*.json")) == [f"{CELL}.json"]
    assert (records / f"{CELL}.d" / "eth1.json").is_file()
    assert await networks.joined_cells("kk-r-b") == [CELL]
    assert await networks.joined_cells("kk-r-a") == []
    assert [a.ifname for a in await networks.joined_interfaces(CELL)] == ["eth1"]

    # A second pass keeps both (no ADD, and no CHECK this soon after the ADD).
    cni.calls.clear()
    again = await networks.join_network(cell_id=CELL, cni_config_path=other, ifname="eth1")
    assert again.address == joined.address
    assert cni.calls == []

    # Another space on the same interface: the old attachment goes first.
    third = tmp_path / "c.conflist"
    await write_conflist(third, _conflist("kk-r-c", "10.88.3.0/24", tmp_path))
    cni.calls.clear()
    moved = await networks.join_network(cell_id=CELL, cni_config_path=third, ifname="eth1")
    assert str(moved.address) == "10.88.3.2/24"
    assert cni.calls == [("DEL", "kk-r-b", "eth1"), ("ADD", "kk-r-c", "eth1")]

    # Leaving what is no longer wanted, then detaching the cell: every interface goes.
    await networks.join_network(cell_id=CELL, cni_config_path=other, ifname="eth2")
    assert await networks.leave_networks(cell_id=CELL, keep={"eth1"}) == ["eth2"]
    assert await networks.leave_networks(cell_id=CELL) == ["eth1"]
    assert not (records / f"{CELL}.d").exists()  # no directory left empty
    await networks.join_network(cell_id=CELL, cni_config_path=third, ifname="eth1")
    cni.calls.clear()
    assert await networks.detach_cell(cell_id=CELL)
    assert ("DEL", "kk-r-c", "eth1") in cni.calls
    assert ("DEL", "kk-r-a", "eth0") in cni.calls
    assert not any(records.iterdir())


async def test_a_changed_first_network_is_attached_again(tmp_path: Path) -> None:
    """The root container's cniConfigPath set (or changed): eth0 moves to that network."""
    networks, cni = _networks(tmp_path)
    space, custom = tmp_path / "a.conflist", tmp_path / "own.conflist"
    await write_conflist(space, _conflist("kk-r-a", "10.88.1.0/24", tmp_path))
    await write_conflist(custom, _conflist("mine", "10.99.0.0/24", tmp_path))
    await networks.attach_cell(cell_id=CELL, cni_config_path=space)
    cni.calls.clear()
    moved = await networks.attach_cell(cell_id=CELL, cni_config_path=custom)
    assert (moved.network_name, str(moved.address)) == ("mine", "10.99.0.2/24")
    assert ("DEL", "kk-r-a", "eth0") in cni.calls
    # A file that cannot be read keeps what is recorded (no address taken away).
    custom.unlink()
    cni.calls.clear()
    kept = await networks.attach_cell(cell_id=CELL, cni_config_path=custom)
    assert kept.network_name == "mine"
    assert cni.calls == []


async def test_cni_check_runs_at_its_interval_and_a_restart_checks_once(tmp_path: Path) -> None:
    """CHECK runs the plugins: not on every pass, only once ``cni_check_seconds`` passed
    since the ADD or the last CHECK (and at the first pass of a new daemon)."""
    networks, cni = _networks(tmp_path, check_seconds=0.0)
    space = tmp_path / "a.conflist"
    await write_conflist(space, _conflist("kk-r-a", "10.88.1.0/24", tmp_path))
    await networks.attach_cell(cell_id=CELL, cni_config_path=space)
    cni.calls.clear()
    await networks.attach_cell(cell_id=CELL, cni_config_path=space)
    assert cni.calls == [("CHECK", "kk-r-a", "eth0")]
    restarted, cni = _networks(tmp_path)
    first = await restarted.attach_cell(cell_id=CELL, cni_config_path=space)
    again = await restarted.attach_cell(cell_id=CELL, cni_config_path=space)
    assert first.address == again.address
    assert cni.calls == [("CHECK", "kk-r-a", "eth0")]


async def test_a_cni_interface_without_its_address_is_made_again_without_check(
    tmp_path: Path,
) -> None:
    networks, cni = _networks(tmp_path)
    space = tmp_path / "a.conflist"
    await write_conflist(space, _conflist("kk-r-a", "10.88.1.0/24", tmp_path))
    await networks.attach_cell(cell_id=CELL, cni_config_path=space)
    cast(Any, networks.inprocess.links).carries = lambda *args: False
    cni.calls.clear()
    await networks.attach_cell(cell_id=CELL, cni_config_path=space)
    assert cni.calls == [
        ("DEL", "kk-r-a", "eth0"),
        ("ADD", "kukeon-loopback", "lo"),
        ("ADD", "kk-r-a", "eth0"),
    ]


async def test_records_of_further_interfaces_are_apart(tmp_path: Path) -> None:
    records = AttachmentRecords(tmp_path)
    assert records.path(CELL) == tmp_path / f"{CELL}.json"
    assert records.path(CELL, "eth2") == tmp_path / f"{CELL}.d" / "eth2.json"
    assert await records.extra_ifnames(CELL) == []
    assert await records.joined("kk-r-b") == []
