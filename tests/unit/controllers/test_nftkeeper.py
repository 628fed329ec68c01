"""nftkeeper: another process's change of the node's nft table (a ruleset flush) has every
space and publishing cell of the node requeued, bridges without a whole guard closed at
once, and is said once (log, Event per space), restored or not; kukeond's own changes are
followed silently."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kukeon.api import Kind
from kukeon.api.event import InvolvedObject
from kukeon.controllers import nftkeeper
from kukeon.controllers.host import Host
from kukeon.controllers.nftkeeper import (
    NftKeeper,
    describe_changes,
    follow,
    gone_by,
    listed_names,
)
from kukeon.framework import ConvergeGate, EventRecorder
from kukeon.runtime.network.nftwatch import Notice

OWN, OTHER = 1000, 2000


def _listing(*chains: str, sets: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "nftables": [
            {"table": {"family": "inet", "name": "kk"}},
            *({"chain": {"table": "kk", "name": name}} for name in chains),
            *({"set": {"table": "kk", "name": name}} for name in sets),
        ]
    }


WHOLE = _listing("forward", "egress-kk-a", "ports-guard", sets=["bridges"])


class FakeTable:
    def __init__(self, *listings: dict[str, Any] | None) -> None:
        self.listings = list(listings)

    async def listing(self) -> dict[str, Any] | None:
        return self.listings[0] if len(self.listings) == 1 else self.listings.pop(0)


class FakePorts:
    def __init__(self) -> None:
        self.closing: list[list[str]] = []

    async def close_unguarded(self, bridges: Iterable[str] = ()) -> list[str]:
        self.closing.append(sorted(bridges))
        return ["kk-a"] if len(self.closing) == 1 else []


class FakeRecorder:
    def __init__(self) -> None:
        self.said: list[tuple[str, str, str]] = []

    def record(self, involved: InvolvedObject, reason: str, message: str, **_: Any) -> None:
        self.said.append((involved.path, reason, message))


class Rig:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        published = tmp_path / "network" / "published"
        published.mkdir(parents=True)
        (published / "kukeon_r_a_st_web").touch()
        self.triggered: list[tuple[Kind, tuple[str, ...]]] = []
        self.forgotten = 0

        async def assignments() -> dict[str, str]:
            return {"r/a": "10.0.0.0/24"}

        def forget() -> None:
            self.forgotten += 1

        networks = SimpleNamespace(
            settings=SimpleNamespace(nft_table="kk", instance=""),
            subnets=SimpleNamespace(assignments=assignments),
            bridge_of=lambda realm, space: f"kk-{space}",
            forward=SimpleNamespace(forget=forget),
        )
        host = SimpleNamespace(
            settings=SimpleNamespace(node_name="n1", state_dir=tmp_path), networks=networks
        )

        def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
            self.triggered.append((kind, key))
            return True

        self.recorder = FakeRecorder()
        self.keeper = NftKeeper(
            host=cast(Host, host),
            trigger=trigger,
            recorder=cast(EventRecorder, self.recorder),
        )
        self.ports = FakePorts()
        monkeypatch.setattr(nftkeeper, "ports_adapter", lambda table: self.ports)
        monkeypatch.setattr(nftkeeper, "started_here", lambda pid: pid == OWN)
        monkeypatch.setattr(nftkeeper, "VERIFY_STEP_SECONDS", 0.01)

    def table(self, *listings: dict[str, Any] | None) -> None:
        self.keeper._nft = cast(Any, FakeTable(*listings))


def _deleted(what: str, name: str = "", pid: int = OTHER) -> Notice:
    return Notice(pid=pid, action="deleted", what=what, name=name)


def test_names_follow_own_changes_and_foreign_deletions_say_what_went() -> None:
    names = set(listed_names(WHOLE))
    assert ("chain", "ports-guard") in names
    follow(names, Notice(pid=OWN, action="added", what="chain", name="ports-c-x"))
    follow(names, Notice(pid=OWN, action="deleted", what="set", name="bridges"))
    assert ("chain", "ports-c-x") in names
    assert ("set", "bridges") not in names
    known = frozenset(names)
    assert gone_by(known, [_deleted("chain", "ports-guard"), _deleted("chain", "x")]) == {
        ("chain", "ports-guard")
    }
    assert gone_by(known, [_deleted("table")]) == known
    assert describe_changes([_deleted("chain", "b"), _deleted("chain", "a")]) == (
        "deleted chain a, b"
    )
    assert describe_changes([_deleted("chain", "a"), _deleted("table")]) == "deleted the table"
    follow(names, _deleted("table", pid=OWN))
    assert not names


def test_a_flushed_table_is_requeued_and_said_restored_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path, monkeypatch)
    rig.table(None, None, WHOLE)  # gone, still gone at the first look, then back
    rig.keeper._names = set(listed_names(WHOLE))
    flush = [_deleted("chain", "ports-guard"), _deleted("set", "bridges"), _deleted("table")]
    asyncio.run(rig.keeper._handle(flush, {OTHER: "nft"}, ["kk-a"]))
    assert rig.triggered == [(Kind.SPACE, ("r", "a")), (Kind.CELL, ("r", "a", "st", "web"))]
    assert rig.forgotten == 1
    assert rig.ports.closing == [["kk-a"]]
    [(path, reason, message)] = rig.recorder.said
    assert (path, reason) == ("space/a", "NetworkRulesRestored")
    assert "node n1: nft table inet kk: deleted the table by nft (pid 2000)" in message
    assert "chains egress-kk-a, forward, ports-guard; sets bridges" in message
    assert "restored in" in message


def test_a_displaced_keeper_closes_the_bridges_and_writes_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another kukeond holds the node's name (the gate closed): the guard's bridges
    are closed, but no space or cell is requeued and no Event written (the resync when the
    gate opens writes the table again)."""
    rig = Rig(tmp_path, monkeypatch)
    gate = ConvergeGate()
    gate.close("node name held by another kukeond")
    rig.keeper.gate = gate
    rig.table(None)
    rig.keeper._names = set(listed_names(WHOLE))
    asyncio.run(rig.keeper._handle([_deleted("table")], {OTHER: "nft"}, ["kk-a"]))
    assert rig.ports.closing == [["kk-a"]]
    assert rig.triggered == []
    assert rig.recorder.said == []
    assert rig.keeper._names == set()


def test_what_is_not_back_in_time_is_said_with_the_bridges_left_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path, monkeypatch)
    monkeypatch.setattr(nftkeeper, "RESTORE_SECONDS", 0.05)
    rig.table(_listing("forward", "egress-kk-a", sets=["bridges"]))  # the guard never back
    rig.keeper._names = set(listed_names(WHOLE))
    asyncio.run(rig.keeper._handle([_deleted("chain", "ports-guard")], {}))
    [(_, reason, message)] = rig.recorder.said
    assert reason == "NetworkRulesNotRestored"
    assert "still missing after 0 s: chains ports-guard" in message
    assert "route_localnet was set back to 0 on kk-a" in message


def test_own_changes_are_followed_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path, monkeypatch)
    rig.table(WHOLE)
    rig.keeper._names = set(listed_names(WHOLE))
    asyncio.run(rig.keeper._handle([_deleted("table", pid=OWN)]))
    assert not rig.keeper._names
    assert (rig.triggered, rig.recorder.said, rig.keeper.rounds) == ([], [], 0)


def test_lost_notices_restore_only_what_the_table_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path, monkeypatch)
    rig.table(WHOLE)
    rig.keeper._names = set(listed_names(WHOLE))
    asyncio.run(rig.keeper._handle([Notice(lost=True)]))
    assert (rig.triggered, rig.keeper.rounds) == ([], 0)  # nothing went
    rig.table(_listing("forward", sets=["bridges"]), WHOLE)
    asyncio.run(rig.keeper._handle([Notice(lost=True)]))
    assert rig.keeper.rounds == 1
    [(_, reason, message)] = rig.recorder.said
    assert reason == "NetworkRulesRestored"
    assert "lost chains or sets by an unknown process" in message
    assert "gone: chains egress-kk-a, ports-guard" in message
