"""A space whose network cells of other spaces join: counted among its cells on the node
(so it is built there and kept), and torn down only once no such cell is on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.api import Kind, parse_resource
from kukeon.controllers.membership import CellMembership
from kukeon.framework import WaitingError
from kukeon.runtime.network import bridge_name
from tests.unit.api.samples import container, realm_doc, space_doc, stack_doc

from .hostfakes import ScopedStore, cell, handler_context, make_host
from .test_layer_lifecycle import World


def test_joined_spaces_merge_every_container_root_first() -> None:
    joiner = cell(
        containers=[
            container("a", networks=["x", "y"]),
            container("b", networks=["z", "x", "s"]),
        ],
        rootContainerId="b",
    )
    assert joiner.spec.joined_spaces() == ["z", "x", "s", "y"]
    # Its own space is no join.
    assert joiner.spec.joined_space_keys() == {("r", "x"), ("r", "y"), ("r", "z")}


def test_membership_counts_a_joining_cell_below_the_joined_space() -> None:
    queued: list[tuple[Kind, tuple[str, ...]]] = []

    def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
        queued.append((kind, key))
        return True

    membership = CellMembership(node="me", trigger=trigger)
    key = ("r", "s", "st", "c")
    b = ("r", "b")
    membership.observe(key, "me", deleted=False, joins=frozenset({b}))
    assert membership.keys_below(b) == [key]
    assert (Kind.SPACE, b) in queued
    queued.clear()
    membership.observe(key, "me", deleted=False, joins=frozenset({b}))  # a status write
    assert queued == []
    membership.observe(key, "me", deleted=False, joins=frozenset())  # no longer joined
    assert membership.keys_below(b) == []
    assert queued == [(Kind.SPACE, b)]
    membership.observe(key, "me", deleted=False, joins=frozenset({b}))
    queued.clear()
    membership.observe(key, "me", deleted=True, joins=frozenset({b}))  # gone
    assert membership.keys_below(b) == []
    assert (Kind.SPACE, b) in queued
    membership.observe(key, "other", deleted=False, joins=frozenset({b}))  # elsewhere
    assert membership.keys_below(b) == []


@pytest.fixture
async def world(tmp_path: Path) -> World:
    store = ScopedStore()
    await store.create(parse_resource(realm_doc("r")))
    for name in ("s", "b"):
        await store.create(parse_resource(space_doc(name, realmId="r")))
    await store.create(parse_resource(stack_doc("st", realmId="r", spaceId="s")))
    return World(make_host(tmp_path), store)


async def test_a_joined_space_is_built_kept_and_waits_for_its_joiners(world: World) -> None:
    await world.store.create(cell("c", containers=[container("main", networks=["b"])]))
    await world.converge()
    joined = await world.reconcile(world.spaces, ("r", "b"))
    # Built here for the cell of space s that joins it (no cell of its own).
    assert "n1" in joined.status.nodes
    assert {e["space"] for e in world.fake.networks.ensured} == {"s", "b"}

    # While a cell is on its network, its teardown waits (and wakes that cell to leave).
    on_network: list[str] = ["kukeon_r_s_st_c"]

    async def joined_cells(network: str) -> list[str]:
        return list(on_network) if network == bridge_name("r", "b") else []

    world.fake.networks.joined_cells = joined_cells  # type: ignore[method-assign]
    space = await world.get(Kind.SPACE, ("r", "b"))
    ctx = handler_context(world.store, kind=Kind.SPACE)
    with pytest.raises(WaitingError, match="leave its network"):
        await world.spaces.finalize(space, ctx)
    assert (Kind.CELL, ("r", "s", "st", "c")) in world.queued
    assert world.fake.networks.removed == []
    on_network.clear()
    await world.spaces.finalize(space, ctx)
    assert [r["space"] for r in world.fake.networks.removed] == ["b"]
