"""The scheduler reading the operator's cache (issue 18): a binding it wrote counts in the
next pass before the watch shows it (assumed bindings), a stale read never resurrects a
deleted cell, and a node it marked NotReady takes no cell from a cache still showing it
Ready."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from kukeon.controllers import scheduler as scheduling
from kukeon.framework.cache import WatchedObjects

from .hostfakes import cell
from .test_scheduling_pass import T0, Clock, Fleet, add_node, fleet, get_cell, scheduler

__all__ = ["fleet"]  # the fixture, imported for pytest


class LaggingCache:
    """The operator's cache with a watch that delivers nothing until ``catch_up``."""

    def __init__(self, store: Fleet) -> None:
        self.store = store
        self.catch_up()

    def catch_up(self) -> None:
        self.objects = dict(self.store.objects)
        self.revision = self.store.revision

    def cache(self) -> WatchedObjects:
        return WatchedObjects(
            lookup=lambda kind, key: self.objects.get((kind, key)),
            listed=lambda kind: True,
            objects=lambda kind: [o for (k, _), o in self.objects.items() if k == kind],
            revision=lambda kind: self.revision,
        )


class CountingFleet(Fleet):
    def __init__(self) -> None:
        super().__init__()
        self.updates: list[str] = []
        self.lists: list[Kind] = []

    async def update(self, obj: Any, *, placement: bool = False) -> Any:
        self.updates.append(obj.metadata.name)
        return await super().update(obj, placement=placement)

    async def list(self, kind: Kind, *args: Any, **kwargs: Any) -> Any:
        self.lists.append(kind)
        return await super().list(kind, *args, **kwargs)


async def backdate(store: Fleet, name: str, seconds: int) -> None:
    """Make ``name`` look older (another API server's clock): it is decided first."""
    key = (Kind.CELL, ("r", "s", "st", name))
    found = store.objects[key]
    metadata = found.metadata.model_copy(
        update={"creation_timestamp": T0 - timedelta(seconds=seconds)}
    )
    store.objects[key] = found.model_copy(update={"metadata": metadata})


async def test_two_quick_passes_spread_before_the_watch_shows_the_first_binding(
    fleet: Fleet,
) -> None:
    await add_node(fleet, "n1")
    await add_node(fleet, "n2")
    await fleet.create(cell("first", node=None))
    lagging = LaggingCache(fleet)
    pass_ = scheduler(fleet, Clock())
    pass_.reads.source = lagging.cache
    await pass_.run_pass()
    assert (await get_cell(fleet, "first")).spec.node_name == "n1"
    # The watch has not delivered the binding; a second cell arrives (older, so the
    # pass decides it first) and is all the cache shows of the change.
    await fleet.create(cell("second", node=None))
    await backdate(fleet, "second", 60)
    lagging.objects[(Kind.CELL, ("r", "s", "st", "second"))] = await get_cell(fleet, "second")
    await pass_.run_pass()
    # Without the assumed binding "first" counted nowhere: "second" took n1 as well.
    assert (await get_cell(fleet, "second")).spec.node_name == "n2"
    assert (await get_cell(fleet, "first")).spec.node_name == "n1"
    assert pass_.stats.assigned == 2, "the assumed cell was not bound a second time"
    lagging.catch_up()
    await pass_.run_pass()
    assert len(pass_.reads.writes) == 0, "the watch showed the bindings: nothing assumed"


async def test_a_pass_does_not_rebind_a_cell_it_assumes_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = CountingFleet()

    async def alive_nodes(client: Any, key_prefix: str) -> set[str]:
        return set(store.alive)

    monkeypatch.setattr(scheduling, "alive_nodes", alive_nodes)
    await add_node(store, "n1")
    await store.create(cell("c", node=None))
    lagging = LaggingCache(store)
    pass_ = scheduler(store, Clock())
    pass_.reads.source = lagging.cache
    await pass_.run_pass()
    await pass_.run_pass()
    assert store.updates == ["c"]
    assert store.lists == [], "every list came from the cache"


async def test_a_cell_deleted_after_the_cache_saw_it_is_not_resurrected(fleet: Fleet) -> None:
    await add_node(fleet, "n1")
    await fleet.create(cell("doomed", node=None))
    lagging = LaggingCache(fleet)
    await fleet.delete(Kind.CELL, ("r", "s", "st", "doomed"))
    pass_ = scheduler(fleet, Clock())
    pass_.reads.source = lagging.cache
    await pass_.run_pass()  # binds the cached version: the key is gone, the write fails
    assert (Kind.CELL, ("r", "s", "st", "doomed")) not in fleet.objects
    assert pass_.stats.assigned == 0


async def test_a_node_marked_not_ready_takes_no_cell_while_the_cache_says_ready(
    fleet: Fleet,
) -> None:
    await add_node(fleet, "n1")
    await add_node(fleet, "n2")
    clock = Clock()
    lagging = LaggingCache(fleet)
    pass_ = scheduler(fleet, clock)
    pass_.reads.source = lagging.cache
    await pass_.run_pass()  # hears both: a lease gone since is a node lost at once
    fleet.alive.discard("n1")
    await pass_.run_pass()  # marks n1 NotReady; the cache still shows it Ready
    await fleet.create(cell("late", node=None))
    lagging.objects[(Kind.CELL, ("r", "s", "st", "late"))] = await get_cell(fleet, "late")
    fleet.alive.add("n1")  # its kukeond is back, but has not written Ready yet
    clock.now = T0 + timedelta(seconds=1)
    await pass_.run_pass()
    placed = await get_cell(fleet, "late")
    assert isinstance(placed, Cell)
    assert placed.spec.node_name == "n2"
