"""How many times kukeond writes a cell from its create until it is Ready, and how a cell
created with its whole hierarchy proceeds: woken by its parents' changes, not by a poll."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import replace

import pytest

from kukeon.api import AnyResource, Kind, key_of
from kukeon.store import WatchEvent
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, watching

pytestmark = pytest.mark.integration


async def _versions_until_ready(
    k: Kukeond, key: tuple[str, ...], create: asyncio.Future[AnyResource]
) -> list[AnyResource]:
    """Every stored version of the cell at `key`, from its create to its first Ready."""
    listing = await k.registry.list(Kind.CELL)
    versions: list[AnyResource] = []
    async with asyncio.timeout(60):
        watch = k.registry.watch(Kind.CELL, resource_version=listing.resource_version)
        await create
        async for event in watch:
            obj = event.object
            if obj is None or key_of(obj) != key:
                continue
            versions.append(obj)
            if str(obj.status.state) == "Ready":
                with contextlib.suppress(Exception):
                    await watch.aclose()  # type: ignore[attr-defined]
                return versions
    raise AssertionError("unreachable")


def _status_writes(versions: list[AnyResource]) -> list[str]:
    """The status each write left (state, reason), one per version whose status changed."""
    writes = []
    for before, after in itertools.pairwise(versions):
        if before.status != after.status:
            writes.append(f"{after.status.state} {after.status.reason or ''}".strip())
    return writes


def _what_changed(before: AnyResource, after: AnyResource) -> str:
    parts = [
        name
        for name, a, b in (
            ("spec", before.spec, after.spec),
            (
                "metadata",
                before.metadata.model_copy(update={"resource_version": None, "generation": 0}),
                after.metadata.model_copy(update={"resource_version": None, "generation": 0}),
            ),
            ("status", before.status, after.status),
        )
        if a != b
    ]
    return "+".join(parts)


POLL = 30.0
"""The parent poll set for the wake-up test (kukeond's default is 1 s)."""


async def test_a_cell_of_a_ready_stack_is_written_once_when_ready(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "keeper", [container(k, "a")]))
    await k.wait_for(Kind.CELL, cell_key(k, "keeper"), state="Ready")

    key = cell_key(k, "one")
    create = asyncio.ensure_future(k.apply(cell_doc(k, "one", [container(k, "a")])))
    versions = await _versions_until_ready(k, key, create)
    # The create, the scheduler's binding (nodeName and the node's finalizer in one
    # write), then one status write: Ready (no Creating or ContainerCreating in between).
    assert _status_writes(versions) == ["Ready"], [v.status for v in versions]
    changes = [_what_changed(a, b) for a, b in itertools.pairwise(versions)]
    assert changes == ["spec+metadata", "status"], changes


async def test_a_cell_created_with_its_space_and_stack_is_woken_not_polled(
    kukeond: Kukeond,
) -> None:
    """The stack waits for its space to be Ready, the cell for its stack to be Ready here:
    each is woken by its parent's change (a poll of 30 s would fail the bound)."""
    k = kukeond
    await k.hierarchy()
    await k.apply({"kind": "Space", "metadata": {"name": "s2"}, "spec": {"realmId": k.realm}})
    await k.apply(
        {
            "kind": "Stack",
            "metadata": {"name": "st2"},
            "spec": {"realmId": k.realm, "spaceId": "s2"},
        }
    )
    key = cell_key(k, "two", space="s2", stack="st2")
    # A poll this slow cannot be what makes the cell Ready within the test's bound.
    controllers = k.daemon.controllers
    assert controllers is not None
    host = controllers.host
    object.__setattr__(host, "settings", replace(host.settings, parent_wait_seconds=POLL))
    started = time.monotonic()
    create = asyncio.ensure_future(
        k.apply(cell_doc(k, "two", [container(k, "a")], space="s2", stack="st2"))
    )
    versions = await _versions_until_ready(k, key, create)
    elapsed = time.monotonic() - started
    writes = _status_writes(versions)
    assert writes[-1] == "Ready"
    # Before it: at most the Pending state naming what the cell waits for.
    assert all(write.startswith("Pending") for write in writes[:-1]), writes
    assert elapsed < POLL / 3, (elapsed, writes)


async def test_a_nodes_first_cell_writes_its_realm_space_and_stack_three_times_each(
    kukeond: Kukeond,
) -> None:
    """A node's first cell materialises its realm, space and stack here: each is written
    with this node's finalizer, its entry Creating, its entry Ready. A wait for the parent
    here (or, on the way out, for the children here) is said in the node's entries, never
    in the top-level status, the fleet's: recorded there, it flapped with every other pass
    clearing it (~23 writes of the three for one cell, four of them waits)."""
    k = kukeond
    await k.hierarchy()
    layers = (Kind.REALM, Kind.SPACE, Kind.STACK)
    versions: dict[Kind, list[AnyResource]] = {kind: [] for kind in layers}

    def note(event: WatchEvent) -> None:
        if event.object.kind in versions and event.object.metadata.name in (k.realm, "s1", "st1"):
            versions[event.object.kind].append(event.object)

    since = (await k.registry.list(Kind.REALM)).resource_version
    key = cell_key(k, "first")
    async with contextlib.AsyncExitStack() as watches:
        for kind in layers:
            await watches.enter_async_context(watching(k, kind, (), note, since=int(since)))
        await k.apply(cell_doc(k, "first", [container(k, "a")]))
        await k.wait_for(Kind.CELL, key, state="Ready")
        await asyncio.sleep(1)  # a flap's second write would come at once
        brought_up = {kind: len(found) for kind, found in versions.items()}
        await k.registry.delete(Kind.CELL, key)
        node = k.config.node_name
        for kind, key_of_layer in zip(
            layers, ((k.realm,), (k.realm, "s1"), (k.realm, "s1", "st1")), strict=True
        ):
            await k.wait_for(kind, key_of_layer, until=lambda o: node not in o.status.nodes)
        await asyncio.sleep(1)
    assert brought_up == {kind: 3 for kind in layers}, versions
    said = [
        (v.kind, v.status.reason) for found in versions.values() for v in found if v.status.reason
    ]
    assert said == [], said
