"""A write made from a stale read never resurrects a deleted object (issue 18).

The leader loops decide on the operator's cache, which can show an object etcd has
deleted meanwhile (or deleted and created again). Their writes are compare-and-swap on the
version they read: these tests check that such a write fails and leaves etcd as it was.
"""

from __future__ import annotations

import pytest

from kukeon.api import CellState, Kind
from kukeon.framework import patch_status
from kukeon.store import Conflict, NotFound, Registry

from .objects import cell, realm, space, stack

pytestmark = pytest.mark.integration

KEY = ("r", "s", "st", "c")


async def test_writes_of_a_deleted_objects_stale_version_fail(registry: Registry) -> None:
    await registry.create(realm("r"))
    await registry.create(space("r", "s"))
    await registry.create(stack("r", "s", "st"))
    read = await registry.create(cell("r", "s", "st", "c"))
    assert await registry.delete(Kind.CELL, KEY) is None  # no finalizer: gone at once
    bound = read.model_copy(update={"spec": read.spec.model_copy(update={"node_name": "n1"})})
    with pytest.raises((NotFound, Conflict)):
        await registry.update(bound)
    with pytest.raises((NotFound, Conflict)):
        await registry.update_status(read)
    assert await patch_status(registry, read, observe=False, state=CellState.UNKNOWN) is None
    assert await registry.remove_finalizer(Kind.CELL, KEY, "kukeon.io/cell") is None
    with pytest.raises(NotFound):
        await registry.get(Kind.CELL, KEY)


async def test_a_stale_version_of_a_recreated_object_conflicts(registry: Registry) -> None:
    await registry.create(realm("r"))
    await registry.create(space("r", "s"))
    await registry.create(stack("r", "s", "st"))
    read = await registry.create(cell("r", "s", "st", "c"))
    await registry.delete(Kind.CELL, KEY)
    again = await registry.create(cell("r", "s", "st", "c"))
    bound = read.model_copy(update={"spec": read.spec.model_copy(update={"node_name": "n1"})})
    with pytest.raises(Conflict):
        await registry.update(bound)
    assert await registry.get(Kind.CELL, KEY) == again
