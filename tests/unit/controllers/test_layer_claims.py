"""A level being built on this node and its parent being torn down from it, at once.

The parent's teardown checks that no child of it is on this node, then removes its host
side; a child's first build checks that its parent is Ready on this node, then builds.
Each check reads what the other writes, so without a common lock a cell arriving just as
the last one left could interleave the two: the parent's check passes (no child entry
yet), the child's passes (the parent's entry still Ready), the child is built and the
parent removed under it -- the child Ready here with its ``cgroupPath`` on a space that
is gone. The parent's host lock, taken by both, orders them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Kind, parse_resource
from kukeon.controllers.layers import HostLocks, LayerController, ready_here
from kukeon.controllers.realm import RealmController
from kukeon.controllers.space import SpaceController
from kukeon.controllers.stack import StackController
from kukeon.framework import WaitingError
from tests.unit.api.samples import realm_doc, space_doc, stack_doc

from .hostfakes import ScopedStore, cell, handler_context, make_host

REALM, SPACE, STACK = ("r",), ("r", "s"), ("r", "s", "st")


async def _pass(store: ScopedStore, layer: LayerController[Any], key: tuple[str, ...]) -> None:
    obj = await store.get(layer.kind, key)
    await layer.reconcile(obj, handler_context(store, kind=layer.kind))


async def test_a_child_built_while_its_parent_goes_waits_for_the_parent(tmp_path: Path) -> None:
    store = ScopedStore()
    await store.create(parse_resource(realm_doc("r")))
    await store.create(parse_resource(space_doc("s", realmId="r")))
    await store.create(parse_resource(stack_doc("st", realmId="r", spaceId="s")))
    host = make_host(tmp_path).host
    locks = HostLocks()  # one set for every level, as in kukeond
    realms, spaces, stacks = (
        RealmController(host=host),
        SpaceController(host=host),
        StackController(host=host),
    )
    for layer in (realms, spaces, stacks):
        layer.locks = locks
    await store.create(cell("one"))
    for layer, key in ((realms, REALM), (spaces, SPACE), (stacks, STACK)):
        await _pass(store, layer, key)
    await store.delete(Kind.CELL, ("r", "s", "st", "one"))
    await _pass(store, stacks, STACK)  # the stack goes first

    # The space's teardown has found no child on this node when a new cell arrives and
    # the stack's pass runs.
    stack_pass: asyncio.Task[None] | None = None
    children_here = spaces._children_here

    async def then_a_cell_arrives(obj: Any, ctx: Any) -> None:
        nonlocal stack_pass
        await children_here(obj, ctx)
        await store.create(cell("two"))
        stack_pass = asyncio.create_task(_pass(store, stacks, STACK))
        await asyncio.wait({stack_pass}, timeout=0.2)

    spaces._children_here = then_a_cell_arrives  # type: ignore[method-assign]
    await _pass(store, spaces, SPACE)
    assert stack_pass is not None
    with pytest.raises(WaitingError, match="Ready on node n1"):
        await stack_pass  # it waits for the space, which the new cell brings back

    space = await store.get(Kind.SPACE, SPACE)
    stack = await store.get(Kind.STACK, STACK)
    assert not ready_here(space, "n1")
    assert not ready_here(stack, "n1")
    assert stack.status.cgroup_path is None
    # The space's next pass (queued by the cell) builds it again, then the stack.
    spaces._children_here = children_here  # type: ignore[method-assign]
    await _pass(store, spaces, SPACE)
    await _pass(store, stacks, STACK)
    assert ready_here(await store.get(Kind.SPACE, SPACE), "n1")
    assert ready_here(await store.get(Kind.STACK, STACK), "n1")
