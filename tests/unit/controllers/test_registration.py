"""What `register_controllers` puts on an operator: a reconcile and a node finalizer per
level, the cell handlers filtered to this node's cells, and background loops started at
startup (after migrating finalizers and a first orphan collection) and stopped at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

import kukeon.controllers as controllers_module
from kukeon.api import Kind
from kukeon.controllers import register_controllers
from kukeon.controllers.imagepulls import BackgroundPulls
from kukeon.controllers.layers import node_finalizer
from kukeon.framework import ConvergeGate

from .hostfakes import cell, make_host


class FakeTasks:
    def __init__(self) -> None:
        self.started: dict[str, Callable[[], Awaitable[None]]] = {}
        self.stopped: list[str] = []

    def start(
        self, name: str, factory: Callable[[], Awaitable[None]], *, finishable: bool = False
    ) -> SimpleNamespace:
        self.started[name] = factory
        return SimpleNamespace(name=name)

    async def stop(self, tasks: list[SimpleNamespace]) -> None:
        self.stopped.extend(task.name for task in tasks)


class FakeOperator:
    def __init__(self) -> None:
        self.reconcilers: dict[Kind, Any] = {}
        self.finalizers: dict[Kind, tuple[Any, str | None]] = {}
        self.finalizer_runs: dict[Kind, Any] = {}
        self.startup: list[Callable[[Any], Awaitable[None]]] = []
        self.shutdown: list[Callable[[Any], Awaitable[None]]] = []
        self.tasks = FakeTasks()
        self.gate = ConvergeGate()
        self.resyncs = 0
        self.listeners: dict[Kind, list[Any]] = {}

    def trigger(self, kind: Kind, key: tuple[str, ...]) -> bool:
        return True

    def requeue(self, obj: Any) -> bool:
        return True

    def resync(self) -> None:
        self.resyncs += 1

    def reconcile(self, kind: Kind, *, when: Any = None) -> Callable[[Any], Any]:
        def add(handler: Any) -> Any:
            self.reconcilers[kind] = when
            return handler

        return add

    def finalize(
        self, kind: Kind, *, when: Any = None, finalizer: str | None = None, runs: Any = None
    ) -> Callable[[Any], Any]:
        def add(handler: Any) -> Any:
            self.finalizers[kind] = (when, finalizer)
            self.finalizer_runs[kind] = runs
            return handler

        return add

    def on_change(self, kind: Kind, listener: Any) -> None:
        self.listeners.setdefault(kind, []).append(listener)

    def on_startup(self, handler: Callable[[Any], Awaitable[None]]) -> Any:
        self.startup.append(handler)
        return handler

    def on_shutdown(self, handler: Callable[[Any], Awaitable[None]]) -> Any:
        self.shutdown.append(handler)
        return handler


class FakeRecorder:
    def __init__(self) -> None:
        self.flushed = False

    def start(self, tasks: FakeTasks) -> SimpleNamespace:
        return tasks.start("kukeon-events", self.flush)

    async def flush(self) -> None:
        self.flushed = True


@pytest.fixture
def background(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"migrate": 0, "collect": 0, "follow": 0}

    async def migrate(registry: Any, *, node: str) -> list[str]:
        calls["migrate"] += 1
        if calls["migrate"] == 1:
            return ["Realm r"]
        raise RuntimeError("etcd down")

    async def collect(**kwargs: Any) -> list[str]:
        calls["collect"] += 1
        if calls["collect"] == 1:
            return ["cell r/s/st/old"]
        raise RuntimeError("CNI DEL failed")

    async def follow(**kwargs: Any) -> None:
        calls["follow"] += 1

    monkeypatch.setattr(controllers_module, "migrate_legacy_finalizers", migrate)
    monkeypatch.setattr(controllers_module, "collect_orphans", collect)
    monkeypatch.setattr(controllers_module, "follow_task_events", follow)
    return calls


async def test_handlers_and_background_loops(tmp_path: Path, background: dict[str, int]) -> None:
    op = FakeOperator()
    recorder = FakeRecorder()
    fake = make_host(tmp_path)
    swept: list[int] = []

    def remove_interrupted() -> list[Path]:  # what image imports a crash cut short left
        swept.append(1)
        return []

    pulls = BackgroundPulls()
    registered = register_controllers(
        cast(Any, op),
        host=fake.host,
        registry=cast(Any, None),
        images=cast(
            Any,
            SimpleNamespace(
                archives=SimpleNamespace(remove_interrupted=remove_interrupted), pulls=pulls
            ),
        ),
        recorder=cast(Any, recorder),
    )
    assert set(op.reconcilers) == {Kind.REALM, Kind.SPACE, Kind.STACK, Kind.CELL}
    when, finalizer = op.finalizers[Kind.SPACE]
    assert finalizer == node_finalizer(Kind.SPACE, "n1")
    assert when(object()) is False, "the level's reconcile adds its node finalizer itself"
    runs_here = op.reconcilers[Kind.CELL]
    assert runs_here(cell("c", node="n1"))
    assert not runs_here(cell("c", node="n2"))
    finalizes = op.finalizer_runs[Kind.CELL]  # a deleted cell: its own node's to tear down
    assert finalizes(cell("c", node="n1"))
    assert finalizes(cell("c", node=None))
    assert not finalizes(cell("c", node="n2"))
    assert registered.realms.locks is registered.layer_locks is registered.spaces.locks
    # The cell membership, the departures and a space's cells follow the operator's own
    # watches (no list + watch of their own).
    assert list(op.listeners) == [Kind.CELL, Kind.SPACE]
    assert registered.departures.changed in op.listeners[Kind.CELL]
    # Each version of a cell says which pulls it still waits for (``imagepulls``): one
    # moved to another node waits for none, and its pull is cancelled.
    assert registered._pulls_needed in op.listeners[Kind.CELL]
    busybox = ("ns", "docker.io/library/busybox:latest")
    registered._pulls_needed(cell("c", node="n1"), False)
    pulls.ask(busybox, ("r", "s", "st", "c"), asyncio.Event().wait)
    assert pulls.under_way() == 1
    registered._pulls_needed(cell("c", node="n2"), False)
    assert pulls.under_way() == 0
    # Fencing and unfencing make no new version of a cell: the departures say so, and the
    # fenced cell's pull is cancelled, then asked for again once it runs here again.
    here, key = cell("c", node="n1"), ("r", "s", "st", "c")
    registered._pulls_needed(here, False)
    pulls.ask(busybox, key, asyncio.Event().wait)
    registered.departures.runs_here_changed(key, None)  # fenced
    assert pulls.under_way() == 0
    pulls.ask(busybox, key, asyncio.Event().wait)  # a pass under way joins none
    assert pulls.under_way() == 0
    registered.departures.runs_here_changed(key, here)  # unfenced
    pulls.ask(busybox, key, asyncio.Event().wait)
    assert pulls.under_way() == 1
    registered._pulls_needed(here, True)
    assert pulls.under_way() == 0

    follow_host_network, start = op.startup
    await follow_host_network(SimpleNamespace())
    assert set(op.tasks.started) == {"kukeon-nft-keeper", "kukeon-host-addresses"}
    for _attempt in range(2):  # the second start: migration and collection fail, logged only
        await start(SimpleNamespace())
    assert background == {"migrate": 2, "collect": 2, "follow": 0}
    assert swept == [1, 1]
    assert set(op.tasks.started) == {
        "kukeon-nft-keeper",
        "kukeon-host-addresses",
        "kukeon-events",
        "kukeon-containerd-events",
        "kukeon-gc",
        "kukeon-unreadable-cells",
        "kukeon-ephemeral-storage",
        "kukeon-secrets",
        "kukeon-cell-peers",
    }
    follow_events = op.tasks.started["kukeon-containerd-events"]
    await follow_events()
    await follow_events()  # restarted after a crash: exits may have been missed
    assert background["follow"] == 2
    assert op.resyncs == 1

    stop_keeping, stop_pulls, stop = op.shutdown
    await stop_keeping(SimpleNamespace())
    assert op.tasks.stopped == ["kukeon-nft-keeper", "kukeon-host-addresses"]
    pulls.ask(("ns", "app"), ("r", "s", "st", "c"), asyncio.Event().wait)
    await stop_pulls(SimpleNamespace())  # the cells' pulls are cancelled
    assert pulls.under_way() == 0
    await stop(SimpleNamespace())
    assert "kukeon-gc" in op.tasks.stopped
    assert "kukeon-ephemeral-storage" in op.tasks.stopped
    assert recorder.flushed


async def test_orphans_are_collected_periodically_despite_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: dict[str, int]
) -> None:
    monkeypatch.setattr(controllers_module, "GC_INTERVAL_SECONDS", 0.001)
    registered = register_controllers(
        cast(Any, FakeOperator()),
        host=make_host(tmp_path).host,
        registry=cast(Any, None),
        # told of arrivals (``imagewaits``), holds the cells' pulls (``imagepulls``), no more
        images=cast(Any, SimpleNamespace(pulls=BackgroundPulls())),
    )
    loop = asyncio.create_task(registered._collect_periodically())
    await asyncio.sleep(0.05)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert background["collect"] >= 2, "a failed pass is logged, the next one runs"


async def test_a_closed_gate_holds_the_orphan_passes_and_its_opening_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: dict[str, int]
) -> None:
    """While another kukeond holds the node's name no orphan pass runs (at start or
    later) and no copy is stopped; when the name is back the collector stops the copies
    of the cells that left meanwhile and collects at once, not GC_INTERVAL_SECONDS later."""
    op = FakeOperator()
    registered = register_controllers(
        cast(Any, op),
        host=make_host(tmp_path).host,
        registry=cast(Any, None),
        images=cast(
            Any,
            SimpleNamespace(
                archives=SimpleNamespace(remove_interrupted=list), pulls=BackgroundPulls()
            ),
        ),
    )
    stale: list[int] = []

    async def stop_stale() -> int:
        stale.append(1)
        return 0

    monkeypatch.setattr(registered.departures, "stop_stale", stop_stale)
    assert registered.departures.gate is op.gate
    assert registered.unreadable.gate is op.gate
    op.gate.close("held by another kukeond")
    await registered._collect_at_start()
    loop = asyncio.create_task(registered._collect_periodically())
    try:
        await asyncio.sleep(0.05)
        assert background["collect"] == 0
        assert stale == []
        op.gate.open()
        for _ in range(100):
            if background["collect"]:
                break
            await asyncio.sleep(0.01)
        assert stale == [1]
        assert background["collect"] == 1
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
