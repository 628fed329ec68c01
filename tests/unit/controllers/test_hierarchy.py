"""Waiting on the hierarchy: what a child waits for (its parent created, not deleting,
Ready; a cell's stack Ready on the cell's node) and a parent's wait for its children."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import Kind, NodeLayerState, NodeLayerStatus, Realm, Space, Stack, parse_resource
from kukeon.controllers.hierarchy import get_as, ready_here, ready_parent, require_no_children
from kukeon.framework import WaitingError
from kukeon.store import NotFound
from tests.unit.api.samples import realm_doc, space_doc, stack_doc

from .hostfakes import ScopedStore, cell, handler_context


def doc(raw: dict[str, Any]) -> Any:
    return parse_resource(raw)


async def test_get_as_reads_typed_and_refuses_another_model() -> None:
    store = ScopedStore()
    await store.create(doc(realm_doc("r")))
    ctx = handler_context(store)
    assert isinstance(await get_as(ctx, Realm, ("r",)), Realm)
    store.objects[(Kind.SPACE, ("r", "s"))] = doc(realm_doc("s"))
    with pytest.raises(TypeError, match="expected a Space"):
        await get_as(ctx, Space, ("r", "s"))


async def test_a_child_waits_for_its_parent_to_exist_stay_and_be_ready() -> None:
    store = ScopedStore()
    ctx = handler_context(store)
    space = doc(space_doc("s", realmId="r"))
    with pytest.raises(WaitingError, match="Realm r to be created") as missing:
        await ready_parent(ctx, space, delay=1.0)
    assert missing.value.reason == "ParentMissing"
    realm = await store.create(doc(realm_doc("r")))
    with pytest.raises(WaitingError, match=r"Realm r to be Ready \(it is Pending\)"):
        await ready_parent(ctx, space, delay=1.0)
    ready = realm.model_copy(update={"status": realm.status.model_copy(update={"state": "Ready"})})
    await store.update_status(ready)
    assert isinstance(await ready_parent(ctx, space, delay=1.0), Realm)
    await store.add_finalizer(Kind.REALM, ("r",), "kukeon.io/test")
    await store.delete(Kind.REALM, ("r",))
    with pytest.raises(WaitingError, match="being deleted"):
        await ready_parent(ctx, space, delay=1.0)
    with pytest.raises(ValueError, match="no parent"):
        await ready_parent(ctx, doc(realm_doc("r")), delay=1.0)


async def test_a_cell_waits_for_its_stack_on_its_own_node() -> None:
    store = ScopedStore()
    stack = await store.create(doc(stack_doc("st", realmId="r", spaceId="s")))
    ctx = handler_context(store, node="n1")
    with pytest.raises(WaitingError, match="being set up on node n1"):
        await ready_parent(ctx, cell("c"), delay=1.0)
    assert isinstance(stack, Stack)
    stack.status.nodes["n1"] = NodeLayerStatus(state=NodeLayerState.READY)
    await store.update_status(stack)
    assert ready_here(await store.get(Kind.STACK, ("r", "s", "st")), "n1")
    assert not ready_here(cell("c"), "n1"), "a cell has no per-node entries"
    await ready_parent(ctx, cell("c"), delay=1.0)


async def test_a_parent_waits_for_its_children_naming_them() -> None:
    store = ScopedStore()
    ctx = handler_context(store)
    await require_no_children(ctx, child_kind=Kind.SPACE, scope=("r",), delay=1.0)
    await store.create(doc(space_doc("a", realmId="r")))
    await store.create(doc(space_doc("b", realmId="r")))
    await store.create(doc(space_doc("c", realmId="other")))
    with pytest.raises(WaitingError, match=r"2 space\(s\) to be deleted: a, b"):
        await require_no_children(ctx, child_kind=Kind.SPACE, scope=("r",), delay=1.0)


async def test_parents_are_read_from_the_watched_objects_and_named_in_the_wait() -> None:
    from dataclasses import replace

    from kukeon.framework.cache import WatchedObjects
    from kukeon.framework.errors import Awaited

    store = ScopedStore()  # empty: every read must come from the cache
    watched: dict[tuple[Kind, tuple[str, ...]], Any] = {}
    cache = WatchedObjects(
        lookup=lambda kind, key: watched.get((kind, key)), listed=lambda kind: kind != Kind.SECRET
    )
    ctx = replace(handler_context(store), cache=cache)
    space = doc(space_doc("s", realmId="r"))
    with pytest.raises(WaitingError, match="to be created") as missing:
        await ready_parent(ctx, space, delay=1.0)
    assert missing.value.on == Awaited(Kind.REALM, ("r",), 0)
    realm = doc(realm_doc("r"))
    realm.metadata.resource_version = "7"
    watched[(Kind.REALM, ("r",))] = realm
    with pytest.raises(WaitingError, match="to be Ready") as pending:
        await ready_parent(ctx, space, delay=1.0)
    assert pending.value.on == Awaited(Kind.REALM, ("r",), 7)
    realm.status.state = "Ready"
    assert await ready_parent(ctx, space, delay=1.0) is realm
    assert await get_as(ctx, Realm, ("r",)) is realm
    with pytest.raises(NotFound):
        await get_as(ctx, Space, ("r", "s"))


async def test_a_level_waits_for_its_parent_on_this_node_from_the_cache() -> None:
    from dataclasses import replace

    from kukeon.controllers.hierarchy import parent_ready_here
    from kukeon.framework.cache import WatchedObjects

    stack = doc(stack_doc("st", realmId="r", spaceId="s"))
    space = doc(space_doc("s", realmId="r"))
    space.metadata.resource_version = "3"
    cache = WatchedObjects(lookup=lambda kind, key: space, listed=lambda kind: True)
    ctx = replace(handler_context(ScopedStore(), node="n1"), cache=cache)
    with pytest.raises(WaitingError, match="Ready on node n1") as waiting:
        await parent_ready_here(ctx, stack, delay=1.0)
    assert waiting.value.reason == "ParentNotReadyOnNode"
    assert waiting.value.on is not None
    assert waiting.value.on.revision == 3
    space.status.nodes["n1"] = NodeLayerStatus(state=NodeLayerState.READY)
    await parent_ready_here(ctx, stack, delay=1.0)
    await parent_ready_here(ctx, doc(realm_doc("r")), delay=1.0)  # a realm has no parent


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (None, "its Stack r/s/st is being set up on node n1"),
        (
            NodeLayerStatus(state=NodeLayerState.CREATING, message="waiting for its Space"),
            "its Stack r/s/st is being set up on node n1: waiting for its Space",
        ),
        (
            NodeLayerStatus(state=NodeLayerState.DELETING),
            "its Stack r/s/st is being torn down on node n1, then set up again",
        ),
        (
            NodeLayerStatus(state=NodeLayerState.FAILED, reason="CgroupFailed", message="EROFS"),
            "its Stack r/s/st failed on node n1: CgroupFailed: EROFS",
        ),
    ],
)
async def test_a_cell_says_what_its_stack_is_doing_on_its_node(
    entry: NodeLayerStatus | None, said: str
) -> None:
    """A first cell waiting for its stack to be set up on its node is a step, not a fault;
    a stack that failed there says why in the cell's own status."""
    store = ScopedStore()
    stack = doc(stack_doc("st", realmId="r", spaceId="s"))
    stack.status.state = "Ready"
    if entry is not None:
        stack.status.nodes["n1"] = entry
    await store.create(stack)
    ctx = handler_context(store, node="n1", kind=Kind.CELL)
    with pytest.raises(WaitingError) as waiting:
        await ready_parent(ctx, cell("c", realm="r", space="s", stack="st"), delay=1.0)
    assert waiting.value.reason == "ParentNotReady"
    assert str(waiting.value) == said
