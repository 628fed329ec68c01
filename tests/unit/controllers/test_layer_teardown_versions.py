"""Every version a watcher can see while a level is torn down from a node.

A reader polling a realm, space or stack (a test, ``kukectl get -w``) sees each stored
version in turn. Two promises about them, checked over the whole history of the store:

- the top-level host fields follow the entries in the same write: a version with no
  entry in ``status.nodes`` never shows a ``cgroupPath``;
- the teardown is two writes, the entry dropped first and the node's finalizer released
  after it: "no entry of this node" alone does not mean "released by this node", so a
  waiter that wants both must wait for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.controllers.layers import LayerController, node_finalizer
from kukeon.controllers.realm import RealmController
from kukeon.controllers.space import SpaceController
from kukeon.controllers.stack import StackController
from tests.unit.api.samples import realm_doc, space_doc, stack_doc

from .hostfakes import ScopedStore, cell, handler_context, make_host

NODE = "n1"
KEYS: dict[Kind, tuple[str, ...]] = {
    Kind.REALM: ("r",),
    Kind.SPACE: ("r", "s"),
    Kind.STACK: ("r", "s", "st"),
}


async def _converge(store: ScopedStore, layers: list[LayerController[Any]]) -> None:
    for layer in layers:
        obj = await store.get(layer.kind, KEYS[layer.kind])
        await layer.reconcile(obj, handler_context(store, kind=layer.kind))


def _versions(store: ScopedStore, kind: Kind) -> list[AnyResource]:
    return [event.object for event in store.history if event.object.kind == kind.value]


def _released_here(obj: AnyResource) -> bool:
    return NODE not in obj.status.nodes and (
        node_finalizer(Kind(obj.kind), NODE) not in obj.metadata.finalizers
    )


async def _materialised_then_torn_down(tmp_path: Path) -> ScopedStore:
    store = ScopedStore()
    await store.create(parse_resource(realm_doc("r")))
    await store.create(parse_resource(space_doc("s", realmId="r")))
    await store.create(parse_resource(stack_doc("st", realmId="r", spaceId="s")))
    fake = make_host(tmp_path)
    layers: list[LayerController[Any]] = [
        RealmController(host=fake.host),
        SpaceController(host=fake.host),
        StackController(host=fake.host),
    ]
    await store.create(cell("c"))
    await _converge(store, layers)
    await store.delete(Kind.CELL, ("r", "s", "st", "c"))
    await _converge(store, layers[::-1])  # children first
    return store


async def test_no_version_without_an_entry_shows_a_cgroup_path(tmp_path: Path) -> None:
    store = await _materialised_then_torn_down(tmp_path)
    for kind in KEYS:
        versions = _versions(store, kind)
        assert any(NODE in obj.status.nodes for obj in versions), kind  # it was built
        for obj in versions:
            if not obj.status.nodes:
                assert obj.status.cgroup_path is None, (kind, obj.status)
                assert obj.status.cgroup_ready is False, (kind, obj.status)


async def test_the_entry_goes_one_write_before_the_finalizer(tmp_path: Path) -> None:
    store = await _materialised_then_torn_down(tmp_path)
    for kind in KEYS:
        versions = _versions(store, kind)
        assert _released_here(versions[-1]), kind
        gone = next(
            i
            for i, obj in enumerate(versions)
            if i > 0 and NODE in versions[i - 1].status.nodes and NODE not in obj.status.nodes
        )
        # The version a poll for "no entry" can return: the finalizer is still held...
        window = versions[gone]
        assert node_finalizer(kind, NODE) in window.metadata.finalizers, kind
        assert not _released_here(window)
        # ...and released by the next write.
        assert _released_here(versions[gone + 1]), kind
