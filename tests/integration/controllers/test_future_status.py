"""A status another (newer) kukeond wrote, with enum values this version does not know.

Put into etcd behind the registry's back (as a newer node writes it): the cell is still
listed, watched and read (registry and API), `kukectl get` and `describe` show the value
as written, and the cell's own node (this one, its observer) converges it back to what it
sees; a realm's entry of another node with an unknown state survives this node's writes.
A spec enum this version does not know is still refused, naming the field (the API's 422:
tests/integration/apiserver/test_future_status_api.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import yaml

from kukeon.api import Cell, Kind, Realm, to_document
from kukeon.api.realm import RealmLimits
from kukeon.store import WatchEvent
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond
from tests.integration.store.test_invalid_documents import put_raw

from .helpers import cell_doc, cell_key, container, get_cell, rewrite, watching

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def collected(
    k: Kukeond, kind: Kind, scope: tuple[str, ...]
) -> AsyncIterator[list[WatchEvent]]:
    since = await k.registry.current_revision()
    seen: list[WatchEvent] = []
    async with watching(k, kind, scope, seen.append, since=since):
        yield seen


async def _kukectl(k: Kukeond, *args: str) -> str:
    scope = ("--realm", k.realm, "--space", "s1", "--stack", "st1")
    code, out, err = await kukectl(k, *args, *scope)
    assert code == 0, err
    return out


async def test_a_cell_with_unknown_status_values_is_kept_and_converged(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "future")
    await k.apply(cell_doc(k, "future", [container(k, "main")]))
    running = await k.wait_for(Kind.CELL, key, state="Ready")
    assert isinstance(running, Cell)
    pid = running.status.containers[0].pid

    # Keep this node from converging it before the reads: its reconcile runs on changes
    # of the spec, and at a resync (triggered below).
    document = to_document(await get_cell(k, key))
    document["status"]["state"] = "Hibernating"
    document["status"]["containers"][0]["state"] = "Checkpointing"
    async with collected(k, Kind.CELL, key[:3]) as seen:
        revision = await put_raw(
            k.registry, k.registry.key_for(Kind.CELL, key), json.dumps(document).encode()
        )
        async with asyncio.timeout(10):
            while not any(e.revision == revision for e in seen):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    [event] = [e for e in seen if e.revision == revision]
    assert event.type == "MODIFIED"  # not DELETED: the cell is not taken for invalid
    assert isinstance(event.object, Cell)
    assert event.object.status.state == "Hibernating"

    listed = await k.registry.list(Kind.CELL, key[:3])
    [cell] = [c for c in listed.items if c.metadata.name == "future"]
    assert isinstance(cell, Cell)
    assert (cell.status.state, cell.status.containers[0].state) == ("Hibernating", "Checkpointing")

    # Its node observes the cell: the next reconcile writes what it sees, the same task.
    assert k.daemon.operator is not None
    k.daemon.operator.resync()

    def converged(obj: object) -> bool:
        return (
            isinstance(obj, Cell)
            and obj.status.state == "Ready"
            and (obj.status.containers[0].state == "Running")
        )

    again = await k.wait_for(Kind.CELL, key, until=converged, within=30)
    assert isinstance(again, Cell)
    assert again.status.containers[0].pid == pid


async def test_kukectl_shows_an_unknown_state_as_written(kukeond: Kukeond) -> None:
    """Without a resync in between: what `get`, `get -o yaml` and `describe` print."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "shown")
    await k.apply(cell_doc(k, "shown", [container(k, "main")]))
    await k.wait_for(Kind.CELL, key, state="Ready")
    document = to_document(await get_cell(k, key))
    document["status"]["state"] = "Hibernating"
    document["status"]["containers"][0]["state"] = "Checkpointing"
    await put_raw(k.registry, k.registry.key_for(Kind.CELL, key), json.dumps(document).encode())

    shown = yaml.safe_load(await _kukectl(k, "get", "cell", "shown", "-o", "yaml"))
    assert shown["status"]["state"] == "Hibernating"
    assert shown["status"]["containers"][0]["state"] == "Checkpointing"
    table = (await _kukectl(k, "get", "cells")).splitlines()
    [row] = [line.split() for line in table if line.split()[:1] == ["shown"]]
    assert "Hibernating" in row, table
    page = await _kukectl(k, "describe", "cell", "shown")
    assert "Hibernating" in page
    containers = page.split("\nContainers:\n", 1)[1]
    [main] = [line.split() for line in containers.splitlines() if line.split()[:1] == ["main"]]
    assert main[1] == "Checkpointing", page


async def test_another_nodes_unknown_entry_survives_this_nodes_writes(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "here", [container(k, "main")]))
    await k.wait_for(Kind.CELL, cell_key(k, "here"), state="Ready")
    realm = await k.registry.get(Kind.REALM, (k.realm,))
    document = to_document(realm)
    document["status"]["nodes"]["node-newer"] = {"state": "Evacuating", "reason": "Drain"}
    await put_raw(
        k.registry, k.registry.key_for(Kind.REALM, (k.realm,)), json.dumps(document).encode()
    )

    # A spec change: this node writes its own entry (observedGeneration) and the top level.
    # The raw write wakes the realm's controller: its status write may race this update.
    updated = await rewrite(
        k,
        Kind.REALM,
        (k.realm,),
        lambda realm: realm.model_copy(
            update={"spec": realm.spec.model_copy(update={"limits": RealmLimits(pids=500)})}
        ),
    )
    generation = updated.metadata.generation

    def observed(obj: object) -> bool:
        if not isinstance(obj, Realm):
            return False
        mine = obj.status.nodes.get(k.config.node_name)
        return mine is not None and mine.observed_generation == generation

    written = await k.wait_for(Kind.REALM, (k.realm,), until=observed, within=30)
    assert isinstance(written, Realm)
    entry = written.status.nodes["node-newer"]
    assert (entry.state, entry.reason) == ("Evacuating", "Drain")
    assert written.status.state == "Ready"


async def test_a_spec_enum_this_version_does_not_know_is_refused(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    document = cell_doc(k, "strict", [container(k, "main")])
    document["spec"]["desiredState"] = "Hibernating"
    code, out, err = await kukectl(k, "apply", "-f", "-", stdin=yaml.safe_dump(document).encode())
    assert code != 0, out
    assert "spec.desiredState" in err, err  # kukectl refuses it before sending (the API: 422)
    assert not (await k.registry.list(Kind.CELL, cell_key(k, "strict")[:3])).items
