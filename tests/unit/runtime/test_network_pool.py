"""The spare-namespace pool's bookkeeping (``runtime.network.pool``), netlink replaced:
which bridges it serves, one entry to one claimant, a refill waiting for a quiet moment,
the sweep of what is on file, the fallback when a spare cannot be used."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from kukeon.runtime.network import bridge_name, inprocess, pool, veth
from kukeon.runtime.network.netns import NetnsManager
from kukeon.runtime.network.pool import NetnsPool, PoolEntry


def _pool(tmp_path: Path, size: int = 2, quiet: float = 0.0) -> NetnsPool:
    return NetnsPool(
        netns=NetnsManager(directory=tmp_path / "netns"),
        directory=tmp_path / "pool",
        size=size,
        quiet_seconds=quiet,
    )


def _made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: NetnsPool) -> list[str]:
    """Entries made without netlink: the file only; what was removed, by token."""
    removed: list[str] = []

    def make() -> PoolEntry:
        entry = PoolEntry(f"{len(list(target.directory.glob('*'))):012x}", peer_index=2)
        target.directory.mkdir(parents=True, exist_ok=True)
        (target.directory / entry.token).touch()
        return entry

    def remove(entry: PoolEntry) -> None:
        removed.append(entry.token)
        (target.directory / entry.token).unlink(missing_ok=True)

    monkeypatch.setattr(target, "_make", make)
    monkeypatch.setattr(target, "_remove", remove)
    monkeypatch.setattr(target, "_bind", lambda entry, path: entry)
    return removed


def test_only_the_bridges_noted_builtin_are_served_and_size_zero_serves_none(
    tmp_path: Path,
) -> None:
    target = _pool(tmp_path)
    target.note_bridge("kk-a", builtin=True)
    target.note_bridge("kk-b", builtin=False)
    assert target.serves("kk-a")
    assert not target.serves("kk-b")
    target.note_bridge("kk-a", builtin=False)  # the space went, or set cniConfigPath
    assert not target.serves("kk-a")
    # A cell network id names its space: `kukeon_<realm>_<space>_<stack>_<cell>`.
    target.note_bridge(bridge_name("r", "s"), builtin=True)
    assert target.serves_cell("kukeon_r_s_st_c")
    assert not target.serves_cell("kukeon_r_other_st_c")
    assert not target.serves_cell("kkt-not-a-cell")
    off = _pool(tmp_path, size=0)
    off.note_bridge("kk-a", builtin=True)
    assert not off.serves("kk-a")


async def test_each_entry_goes_to_one_claimant_and_the_pool_refills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _pool(tmp_path)
    _made(tmp_path, monkeypatch, target)
    refill = asyncio.create_task(target.run())
    try:
        for _ in range(100):
            if target.ready == 2:
                break
            await asyncio.sleep(0.01)
        paths = [tmp_path / f"cell{i}" for i in range(3)]
        claimed = await asyncio.gather(*(target.claim(path) for path in paths))
        assert claimed.count(True) == 2
        spares = [target.spare_of(path) for path in paths]
        owned = [spare for spare in spares if spare is not None]
        assert len({name for name, _ in owned}) == 2  # never the same entry twice
        for _ in range(100):
            if target.ready == 2:
                break
            await asyncio.sleep(0.01)
        assert target.ready == 2
        for path in paths:
            target.settled(path)
        assert len(list(target.directory.iterdir())) == 2  # the claimed entries' files gone
    finally:
        refill.cancel()
        await asyncio.gather(refill, return_exceptions=True)


async def test_a_claim_on_a_namespace_already_there_keeps_the_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _pool(tmp_path)
    _made(tmp_path, monkeypatch, target)
    target._ready.append(PoolEntry("eeeeeeeeeeee"))
    monkeypatch.setattr(target, "_bind", lambda entry, path: None)  # a running cell's
    assert await target.claim(tmp_path / "cell")
    assert target.ready == 1
    assert target.spare_of(tmp_path / "cell") is None


async def test_the_refill_waits_while_cells_are_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _pool(tmp_path, size=1, quiet=0.3)
    _made(tmp_path, monkeypatch, target)
    target.busy()
    refill = asyncio.create_task(target.run())
    try:
        await asyncio.sleep(0.15)
        target.busy()  # another cell: the quiet moment starts again
        await asyncio.sleep(0.2)
        assert target.ready == 0
        await asyncio.sleep(0.3)
        assert target.ready == 1
    finally:
        refill.cancel()
        await asyncio.gather(refill, return_exceptions=True)


async def test_the_sweep_removes_every_entry_on_file_and_the_drain_the_ready_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _pool(tmp_path)
    removed = _made(tmp_path, monkeypatch, target)
    (tmp_path / "pool").mkdir()
    for token in ("aaaaaaaaaaaa", "bbbbbbbbbbbb"):
        (tmp_path / "pool" / token).touch()
    (tmp_path / "pool" / "not-an-entry").touch()
    assert target.sweep() == 2
    assert sorted(removed) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    target._ready.append(PoolEntry("cccccccccccc"))
    await target.drain()
    assert target.ready == 0
    assert removed[-1] == "cccccccccccc"


def test_a_spare_that_cannot_be_used_leaves_a_pair_made_from_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _pool(tmp_path)
    netns = tmp_path / "cell"
    target._claimed[netns] = PoolEntry("dddddddddddd", peer_index=2)
    calls: list[str] = []

    def from_spare(port: veth.BridgePort, spare: str, peer_index: int) -> None:
        raise OSError("renaming failed")

    monkeypatch.setattr(veth, "make_port_from_spare", from_spare)

    def remove_port(name: str) -> bool:
        calls.append(f"del {name}")
        return True

    monkeypatch.setattr(veth, "remove_port", remove_port)
    monkeypatch.setattr(veth, "make_port", lambda port: calls.append("make"))
    port = veth.BridgePort(
        netns=netns,
        ifname=pool.SPARE_IFNAME,
        host_ifname="vethcell",
        bridge="kk-a",
        address=IPv4Interface("10.1.0.2/24"),
        gateway=IPv4Address("10.1.0.1"),
    )
    inprocess.NetlinkLinks(target).make_port(port)
    assert calls == ["del kkpdddddddddddd", "make"]
    assert target.spare_of(netns) is None
