"""The set controller reading the operator's cache (issue 18): cells it created count in
the next pass before the watch shows them, and a cell whose set the cache does not show
yet is not deleted as an orphan."""

from __future__ import annotations

from typing import Any, cast

from kukeon.api import CELLSET_LABEL, Cell, Kind, key_of
from kukeon.controllers.cellsets import CellSetController
from kukeon.store import Registry

from .hostfakes import ScopedStore
from .test_cellset_owners import owned
from .test_cellset_progress import a_set
from .test_scheduler_cache import LaggingCache


def cells_of(store: ScopedStore) -> list[Cell]:
    return [c for (k, _), c in store.objects.items() if k == Kind.CELL and isinstance(c, Cell)]


async def test_a_pass_right_after_creating_cells_creates_no_more() -> None:
    store = ScopedStore()
    await store.create(a_set("1"))
    lagging = LaggingCache(cast(Any, store))
    controller = CellSetController(registry=cast(Registry, store))
    controller.reads.source = lagging.cache
    await controller.run_pass()
    assert len(cells_of(store)) == 2
    # Woken by its own creates, before the watch delivered them.
    await controller.run_pass()
    await controller.run_pass()
    assert len(cells_of(store)) == 2, "the created cells counted from the overlay"
    lagging.catch_up()
    await controller.run_pass()
    assert len(cells_of(store)) == 2


async def test_a_cell_of_a_set_the_cache_does_not_show_yet_is_kept() -> None:
    store = ScopedStore()
    lagging = LaggingCache(cast(Any, store))
    cellset = await store.create(a_set("1"))
    cell = owned("web-abc-x1").model_copy(deep=True)
    spec = cell.spec
    set_key = key_of(cellset)
    spec.realm_id, spec.space_id, spec.stack_id = set_key[:3]
    cell.metadata.labels[CELLSET_LABEL] = set_key[3]
    stored = await store.create(cell)
    # The cell's watch delivered it, the sets' watch not yet.
    lagging.objects[(Kind.CELL, key_of(stored))] = stored
    controller = CellSetController(registry=cast(Registry, store))
    controller.reads.source = lagging.cache
    await controller.run_pass()
    found = store.objects[(Kind.CELL, key_of(stored))]
    assert found.metadata.deletion_timestamp is None, "etcd says its set exists"
    await store.delete(Kind.CELL_SET, set_key)
    await controller.run_pass()
    assert (Kind.CELL, key_of(stored)) not in store.objects, "its set is gone: deleted"
