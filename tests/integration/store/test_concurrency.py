"""Compare-and-swap under contention, and the hierarchy's delete rules, on a real etcd."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random

import pytest

from kukeon.api import Kind
from kukeon.store import ChildrenExist, Conflict, NotFound, Registry

from .objects import cell, realm, space, stack, with_labels

pytestmark = pytest.mark.integration


async def test_fifty_concurrent_updates_from_one_version_one_wins(registry: Registry) -> None:
    created = await registry.create(realm("r"))
    results = await asyncio.gather(
        *(registry.update(with_labels(created, {"writer": str(i)})) for i in range(50)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1
    assert len(conflicts) == 49
    assert await registry.get(Kind.REALM, ("r",)) == winners[0]


async def test_fifty_writers_retrying_never_lose_an_increment(registry: Registry) -> None:
    await registry.create(realm("r", labels={"counter": "0"}))
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        while True:
            current = await registry.get(Kind.REALM, ("r",))
            value = int(current.metadata.labels["counter"]) + 1
            try:
                await registry.update(with_labels(current, {"counter": str(value)}))
                return
            except Conflict:
                conflicts += 1

    await asyncio.gather(*(increment() for _ in range(50)))
    final = await registry.get(Kind.REALM, ("r",))
    assert final.metadata.labels["counter"] == "50"
    assert conflicts > 0  # there was real contention


async def test_delete_of_parent_with_children_is_refused_and_changes_nothing(
    registry: Registry,
) -> None:
    await registry.create(realm("r"))
    for name in ("a", "b", "c"):
        await registry.create(space("r", name))
    before_rev = await registry.current_revision()
    before = await registry.get(Kind.REALM, ("r",))
    with pytest.raises(ChildrenExist) as refused:
        await registry.delete(Kind.REALM, ("r",))
    message = str(refused.value)
    assert "Realm 'r'" in message
    assert "'r/a'" in message
    assert "'r/c'" in message
    assert refused.value.children == ["r/a", "r/b", "r/c"]
    assert await registry.current_revision() == before_rev
    assert await registry.get(Kind.REALM, ("r",)) == before


async def test_cascading_delete_removes_every_document_children_first(registry: Registry) -> None:
    # The issue says "37 documents"; 1 realm + 3 spaces + 6 stacks + 30 cells is 40.
    await registry.create(realm("r"))
    expected: set[tuple[str, tuple[str, ...]]] = {("Realm", ("r",))}
    for s in range(3):
        await registry.create(space("r", f"s{s}"))
        expected.add(("Space", ("r", f"s{s}")))
        for t in range(2):
            await registry.create(stack("r", f"s{s}", f"t{t}"))
            expected.add(("Stack", ("r", f"s{s}", f"t{t}")))
            for c in range(5):
                await registry.create(cell("r", f"s{s}", f"t{t}", f"c{c}"))
                expected.add(("Cell", ("r", f"s{s}", f"t{t}", f"c{c}")))
    assert len(expected) == 40
    start = await registry.current_revision()

    assert await registry.delete(Kind.REALM, ("r",), cascade=True) is None

    for kind in (Kind.REALM, Kind.SPACE, Kind.STACK, Kind.CELL):
        assert (await registry.list(kind)).items == []
    # Replay the history: when each key went, and that its children went before it.
    root = registry.layout.registry_root.encode()
    end = await registry.current_revision()
    removed_at: dict[tuple[str, tuple[str, ...]], int] = {}
    watch = await registry.client.watch_prefix(root + b"/", start_revision=start + 1)
    async for event in watch:
        if event.kind == "DELETE":
            plural, *names = event.kv.key.decode()[len(root) + 1 :].split("/")
            kind_of = {"realms": "Realm", "spaces": "Space", "stacks": "Stack", "cells": "Cell"}
            removed_at[(kind_of[plural], tuple(names))] = event.kv.mod_revision
        if event.kv.mod_revision >= end:
            break
    await watch.cancel()
    assert set(removed_at) == expected
    for (kind_name, names), revision in removed_at.items():
        for (other_kind, other_names), other_revision in removed_at.items():
            if len(other_names) == len(names) + 1 and other_names[: len(names)] == names:
                assert other_revision < revision, (other_kind, other_names, kind_name, names)


@pytest.mark.parametrize("cascade", [True, False], ids=["cascade", "plain"])
async def test_child_create_racing_parent_delete_never_orphans(
    registry: Registry, cascade: bool
) -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    for round_ in range(100):
        name = f"r{round_}"
        await registry.create(realm(name))
        await registry.create(space(name, "s"))
        await registry.create(stack(name, "s", "st"))

        async def create_child(name: str = name) -> str:
            await asyncio.sleep(random.uniform(0, 0.003))  # vary who reaches etcd first
            try:
                await registry.create(cell(name, "s", "st", "c"))
            except NotFound:
                return "child refused"
            return "child created"

        async def delete_parent(name: str = name) -> str:
            await asyncio.sleep(random.uniform(0, 0.003))
            try:
                gone = await registry.delete(Kind.STACK, (name, "s", "st"), cascade=cascade)
            except ChildrenExist:
                return "delete refused"
            return "parent deleted" if gone is None else "parent pending"

        results = list(await asyncio.gather(delete_parent(), create_child()))
        outcomes.update(results)
        # Whatever the interleaving, a cell exists only while its stack does.
        cells = (await registry.list(Kind.CELL, (name,))).items
        stacks = (await registry.list(Kind.STACK, (name,))).items
        assert stacks or not cells, f"round {round_}: orphan cell {results}"
        await registry.delete(Kind.REALM, (name,), cascade=True)
        assert (await registry.list(Kind.CELL, (name,))).items == []
    assert outcomes["child created"] + outcomes["child refused"] == 100
    print(f"race outcomes (cascade={cascade}):", dict(outcomes))


async def test_raw_orphan_check_by_keys(registry: Registry) -> None:
    """The same race at the key level: every cell key has its stack key, at one revision."""
    await registry.create(realm("r"))
    await registry.create(space("r", "s"))

    async def one_round(index: int) -> None:
        await registry.create(stack("r", "s", f"st{index}"))

        async def create_cell() -> None:
            with contextlib.suppress(NotFound):
                await registry.create(cell("r", "s", f"st{index}", "c"))

        await asyncio.gather(
            registry.delete(Kind.STACK, ("r", "s", f"st{index}"), cascade=True), create_cell()
        )

    await asyncio.gather(*(one_round(i) for i in range(30)))
    root = registry.layout.registry_root.encode()
    everything = await registry.client.get_prefix(root + b"/")
    keys = {kv.key.decode()[len(root) + 1 :] for kv in everything}
    for key in keys:
        plural, *names = key.split("/")
        if plural == "cells":
            assert "stacks/" + "/".join(names[:-1]) in keys, key
