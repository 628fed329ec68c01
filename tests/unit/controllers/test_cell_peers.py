"""Which cells a cell's /etc/hosts lists, and when the files are rewritten."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from kukeon.api import Cell, parse_resource
from kukeon.controllers import cellpeers
from kukeon.controllers.cellpeers import CellPeers, render_cell_hosts, rewrite_in_place

NODE = "n1"
COALESCE_WAIT = cellpeers.COALESCE_SECONDS + 0.5


def _cell(
    name: str,
    *,
    space: str = "s1",
    stack: str = "st1",
    ip: str | None = "10.0.0.2",
    node: str = NODE,
    aliases: list[str] | None = None,
    networks: list[str] | None = None,
    interfaces: list[dict[str, Any]] | None = None,
) -> Cell:
    network: dict[str, Any] = {"ip": ip} if ip else {}
    if interfaces is not None:
        network["interfaces"] = interfaces
    cell = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "realmId": "r",
                "spaceId": space,
                "stackId": stack,
                "nodeName": node,
                "containers": [
                    {
                        "id": "main",
                        "image": "busybox",
                        "networksAliases": aliases or [],
                        "networks": networks or [],
                    }
                ],
            },
            "status": {"network": network},
        }
    )
    assert isinstance(cell, Cell)
    return cell


def _names(entries: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(name, str(address)) for name, address in entries]


def test_the_cells_of_a_space_on_this_node_are_listed_with_their_aliases() -> None:
    peers = CellPeers(node=NODE, state_dir=Path("/nonexistent"))
    peers.changed(_cell("web", ip="10.0.0.2", aliases=["frontend"]), False)
    peers.changed(_cell("db", ip="10.0.0.3", stack="data"), False)
    peers.changed(_cell("far", ip="10.0.0.9", node="n2"), False)  # another node's bridge
    peers.changed(_cell("other", ip="10.1.0.2", space="s2"), False)  # another network
    peers.changed(_cell("starting", ip=None), False)  # no address yet
    assert _names(peers.hosts_of(_cell("web"))) == [
        ("db", "10.0.0.3"),
        ("db.data", "10.0.0.3"),
        ("web", "10.0.0.2"),
        ("web.st1", "10.0.0.2"),
        ("frontend", "10.0.0.2"),
    ]
    # A cell's first pass (no address yet) already lists its peers.
    assert ("web", "10.0.0.2") in _names(peers.hosts_of(_cell("starting", ip=None)))


def test_a_joined_space_lists_its_cells_on_their_address_there() -> None:
    peers = CellPeers(node=NODE, state_dir=Path("/nonexistent"))
    joiner = _cell(
        "joiner",
        ip="10.0.0.5",
        networks=["s2"],
        interfaces=[
            {"interface": "eth0", "space": "s1", "ip": "10.0.0.5"},
            {"interface": "eth1", "space": "s2", "ip": "10.1.0.5"},
        ],
    )
    peers.changed(joiner, False)
    peers.changed(_cell("api", ip="10.1.0.2", space="s2"), False)
    # From s2, the joiner is at its s2 address; the joiner sees s2's cells.
    assert ("joiner", "10.1.0.5") in _names(peers.hosts_of(_cell("api", space="s2")))
    assert ("joiner", "10.0.0.5") not in _names(peers.hosts_of(_cell("api", space="s2")))
    assert ("api", "10.1.0.2") in _names(peers.hosts_of(joiner))


def test_a_cell_deleted_moved_or_being_deleted_is_no_longer_listed() -> None:
    peers = CellPeers(node=NODE, state_dir=Path("/nonexistent"))
    for name in ("a", "b", "c"):
        peers.changed(_cell(name), False)
    peers.changed(_cell("a"), True)
    peers.changed(_cell("b", node="n2"), False)
    going = _cell("c")
    going.metadata.deletion_timestamp = datetime.now(UTC)
    peers.changed(going, False)
    assert peers.hosts_of(_cell("x")) == []


def test_a_sets_replicas_answer_to_the_sets_name() -> None:
    peers = CellPeers(node=NODE, state_dir=Path("/nonexistent"))
    for index, ip in enumerate(("10.0.0.4", "10.0.0.5")):
        replica = _cell(f"web-{index}", ip=ip)
        replica.metadata.labels["kukeon.io/cellset"] = "web"
        peers.changed(replica, False)
    entries = _names(peers.hosts_of(_cell("client")))
    assert [address for name, address in entries if name == "web"] == ["10.0.0.4", "10.0.0.5"]
    assert ("web.st1", "10.0.0.4") in entries


def test_a_bad_alias_leaves_it_out_not_the_neighbours_files() -> None:
    peers = CellPeers(node=NODE, state_dir=Path("/nonexistent"))
    peers.changed(_cell("web", aliases=["-bad-", "ok"]), False)
    names = [name for name, _ in peers.hosts_of(_cell("x"))]
    assert names == ["web", "web.st1", "ok"]
    # And the file renders.
    text = render_cell_hosts(_cell("x"), ip_address("10.0.0.7"), peers.peers_text(_cell("x")))
    assert "10.0.0.2\tok" in text


def test_a_rewrite_keeps_the_inode_and_never_creates(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    assert not rewrite_in_place(hosts, "x\n")
    assert not hosts.exists()
    hosts.write_text("a much longer old content\n")
    inode = hosts.stat().st_ino
    assert rewrite_in_place(hosts, "new\n")
    assert hosts.read_text() == "new\n"
    assert hosts.stat().st_ino == inode


async def test_a_burst_of_changes_rewrites_each_file_of_the_space_once(
    monkeypatch: Any, tmp_path: Path
) -> None:
    monkeypatch.setattr(cellpeers, "COALESCE_SECONDS", 0.05)
    peers = CellPeers(node=NODE, state_dir=tmp_path)
    rewritten: list[tuple[str, ...]] = []

    def rewrite_all(files: list[tuple[Path, str]]) -> None:
        rewritten.extend(path.relative_to(tmp_path / "cells").parent.parts for path, _ in files)

    monkeypatch.setattr(cellpeers, "_rewrite_all", rewrite_all)
    follower = asyncio.create_task(peers.follow())
    try:
        for index in range(5):
            peers.changed(_cell(f"c{index}", ip=f"10.0.0.{index + 2}"), False)
        peers.changed(_cell("elsewhere", ip="10.1.0.2", space="s2"), False)
        await asyncio.sleep(0.3)
        expected = [("r", "s1", "st1", f"c{index}") for index in range(5)]
        assert sorted(rewritten) == [*expected, ("r", "s2", "st1", "elsewhere")]
        rewritten.clear()
        peers.changed(_cell("c0", ip="10.0.0.2"), False)  # no change: nothing to do
        peers.changed(_cell("elsewhere", ip="10.1.0.3", space="s2"), False)
        await asyncio.sleep(0.3)
        assert rewritten == [("r", "s2", "st1", "elsewhere")]
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def test_a_round_writes_the_peers_into_the_existing_files(tmp_path: Path) -> None:
    peers = CellPeers(node=NODE, state_dir=tmp_path)
    web_hosts = tmp_path / "cells/r/s1/st1/web/hosts"
    web_hosts.parent.mkdir(parents=True)
    web_hosts.write_text("old\n")
    follower = asyncio.create_task(peers.follow())
    try:
        peers.changed(_cell("web", ip="10.0.0.2"), False)
        peers.changed(_cell("db", ip="10.0.0.3"), False)  # no directory: nothing is made
        await asyncio.sleep(COALESCE_WAIT)
        text = web_hosts.read_text()
        assert "10.0.0.2\tweb\n" in text
        assert "10.0.0.3\tdb.st1\n" in text
        assert not (tmp_path / "cells/r/s1/st1/db").exists()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def test_a_cell_whose_own_alias_cannot_be_written_does_not_stop_the_others(
    tmp_path: Path,
) -> None:
    # Stored before the API refused such aliases: its own file is its own pass's to fail.
    peers = CellPeers(node=NODE, state_dir=tmp_path)
    for name in ("bad", "good"):
        hosts = tmp_path / f"cells/r/s1/st1/{name}/hosts"
        hosts.parent.mkdir(parents=True)
        hosts.write_text("old\n")
    follower = asyncio.create_task(peers.follow())
    try:
        peers.changed(_cell("bad", ip="10.0.0.2", aliases=["not a host"]), False)
        peers.changed(_cell("good", ip="10.0.0.3"), False)
        await asyncio.sleep(COALESCE_WAIT)
        assert not follower.done()
        assert "10.0.0.2\tbad\n" in (tmp_path / "cells/r/s1/st1/good/hosts").read_text()
        assert (tmp_path / "cells/r/s1/st1/bad/hosts").read_text() == "old\n"
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
