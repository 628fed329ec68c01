"""Which node reports an undecodable cell document: the nodes that run the cell and the
fleet's leader, not every node of the fleet."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kukeon.api import Kind
from kukeon.controllers.unreadable import Unreadable, UnreadableCells
from kukeon.store import NotFound

RUN_HERE = ("r", "s", "st", "here")
RUN_NOWHERE = ("r", "s", "st", "nowhere")
BAD: list[Unreadable] = [
    (RUN_HERE, "/kukeon/cells/r/s/st/here", 7, "not JSON"),
    (RUN_NOWHERE, "/kukeon/cells/r/s/st/nowhere", 8, "not JSON"),
]


class FakeRegistry:
    def __init__(self) -> None:
        self.bad: list[Unreadable] = list(BAD)

    def invalid_documents_under(self, kind: Kind) -> list[Unreadable]:
        assert kind == Kind.CELL
        return self.bad

    async def get(self, kind: Kind, key: tuple[str, ...]) -> Any:
        raise NotFound(f"no {kind.value} {key}")  # no Node: the condition is not written


class FakeRecorder:
    def __init__(self) -> None:
        self.told: list[str] = []

    def record(self, involved: Any, reason: Any, message: str, **_: Any) -> None:
        self.told.append(involved.name)


Runs = Callable[[], Awaitable[set[tuple[str, ...]]]]


def _runs(keys: set[tuple[str, ...]]) -> Runs:
    async def local_cells() -> set[tuple[str, ...]]:
        return keys

    return local_cells


async def _no_orphans() -> list[str]:
    return []


def _node(name: str, local_cells: Runs, registry: FakeRegistry) -> UnreadableCells:
    return UnreadableCells(
        registry=registry,  # type: ignore[arg-type]
        node_name=name,
        collect_orphans=_no_orphans,
        local_cells=local_cells,
        recorder=FakeRecorder(),  # type: ignore[arg-type]
    )


def _told(node: UnreadableCells) -> list[str]:
    recorder = node._recorder
    assert isinstance(recorder, FakeRecorder)
    return recorder.told


async def test_a_node_reports_the_cells_it_runs_and_the_leader_reports_every_one() -> None:
    registry = FakeRegistry()
    runner = _node("a", _runs({RUN_HERE}), registry)
    bystander = _node("b", _runs(set()), registry)
    leader = _node("c", _runs(set()), registry)
    for node in (runner, bystander):
        node.leads = lambda: False
    for node in (runner, bystander, leader):
        await node.look()
    assert [key for key, *_ in runner.current] == [RUN_HERE]
    assert _told(runner) == ["here"]
    assert bystander.current == []
    assert _told(bystander) == []
    quiet = bystander.condition(datetime.now(UTC))
    assert quiet.status == "False"
    assert quiet.message is not None
    assert quiet.message.startswith("2 cell document(s) in etcd cannot be decoded, of cells")
    assert "1 document(s) of cells this node runs (2 in etcd in all)" in (
        runner.condition(datetime.now(UTC)).message or ""
    )
    assert [key for key, *_ in leader.current] == [RUN_HERE, RUN_NOWHERE]
    assert _told(leader) == ["here", "nowhere"]
    # Leadership moves: the new leader says what it did not; the old one stops.
    leader.leads = lambda: False
    bystander.leads = lambda: True
    for node in (bystander, leader):
        await node.look()
    assert _told(bystander) == ["here", "nowhere"]
    assert leader.current == []
    assert _told(leader) == ["here", "nowhere"], "no Event again"


async def test_containerd_away_keeps_what_the_node_last_ran() -> None:
    registry = FakeRegistry()
    answers: list[set[tuple[str, ...]] | Exception] = [{RUN_HERE}, OSError("containerd away")]

    async def local_cells() -> set[tuple[str, ...]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    node = _node("a", local_cells, registry)
    node.leads = lambda: False
    await node.look()
    await node.look()
    assert [key for key, *_ in node.current] == [RUN_HERE]
