"""kukectl's wait for deletion (``delete --wait``, ``wait --for=delete``): each object read
once, then its watch until it says DELETED, never read again on a timer (a poll added up
to 0.25 s, 1 s on a terminal, after the object was gone); and the terminal's status line,
which counted the cells under a realm or a space by listing cells with their scope (a
ValueError: the delete failed as an unexpected failure once the first read found the
object still there)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli import wait
from kukeon.cli.wait import Target, wait_gone
from kukeon.client.apiclient import ApiClient, ApiRequestError, ClientWatchEvent, ObjectList
from kukeon.client.paths import collection_path

PARENTS = {Kind.SPACE: ("realmId",), Kind.STACK: ("realmId", "spaceId")}
PARENTS[Kind.CELL] = (*PARENTS[Kind.STACK], "stackId")


def stored(kind: Kind, key: tuple[str, ...], revision: int) -> AnyResource:
    spec: dict[str, Any] = dict(zip(PARENTS.get(kind, ()), key, strict=False))
    if kind == Kind.CELL:
        spec["containers"] = [{"id": "main", "image": "busybox"}]
    metadata = {"name": key[-1], "resourceVersion": str(revision)}
    document = {"apiVersion": "kukeon.io/v1beta1", "kind": kind.value}
    return parse_resource({**document, "metadata": metadata, "spec": spec})


class DeletingServer:
    """Objects being deleted: each read is counted; each watch says MODIFIED (a finalizer
    wrote) then DELETED once ``finish`` is set. Lists check their scope as the client's
    paths do."""

    def __init__(self, objects: list[Target]) -> None:
        self.objects = {key: kind for kind, key in objects}
        self.reads: list[tuple[str, ...]] = []
        self.watches: list[dict[str, Any]] = []
        self.finish = asyncio.Event()

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        self.reads.append(key)
        if key not in self.objects:
            raise ApiRequestError(404, "NotFound", f"{key} not found")
        return stored(kind, key, 10)

    async def list(self, kind: Kind, scope: tuple[str, ...], **_: Any) -> ObjectList:
        collection_path(kind, scope)  # the scope's check: ValueError as the real client
        items = [
            stored(kind, key, 10)
            for key, its in self.objects.items()
            if its == kind and key[:-1] == tuple(scope)
        ]
        return ObjectList(items, 10)

    async def watch(
        self, kind: Kind, scope: tuple[str, ...], **options: Any
    ) -> AsyncIterator[ClientWatchEvent]:
        self.watches.append({"scope": scope, **options})
        key = (*scope, options["name"])
        yield ClientWatchEvent("MODIFIED", stored(kind, key, 11), 11)
        await self.finish.wait()
        self.objects.pop(key, None)
        yield ClientWatchEvent("DELETED", stored(kind, key, 12), 12)


async def test_the_wait_is_the_objects_watch_not_a_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each object is read once and watched from the revision read; the wait ends on its
    DELETED event. Before, each was read again every 0.25 s (three times in this wait)."""
    monkeypatch.setattr(wait, "_tty", lambda: False, raising=False)
    targets: list[Target] = [(Kind.SPACE, ("r", "s")), (Kind.CELL, ("r", "s", "st", "c"))]
    server = DeletingServer([*targets, (Kind.STACK, ("r", "s", "st"))])
    waiting = asyncio.ensure_future(wait_gone(cast(ApiClient, server), targets, 60))
    await asyncio.sleep(0.6)  # a poll's three rounds: none must come
    assert not waiting.done()
    server.finish.set()
    assert await waiting == []
    assert sorted(server.reads) == sorted(key for _, key in targets)  # read once each
    assert sorted((w["scope"], w["name"], w["resource_version"]) for w in server.watches) == [
        (("r",), "s", 10),
        (("r", "s", "st"), "c", 10),
    ]


async def test_an_object_already_gone_is_not_watched() -> None:
    server = DeletingServer([])
    assert await wait_gone(cast(ApiClient, server), [(Kind.REALM, ("r",))], 60) == []
    assert server.watches == []


async def test_what_the_time_left_says_is_still_there() -> None:
    server = DeletingServer([(Kind.STACK, ("r", "s", "st"))])  # never finishes
    assert await wait_gone(cast(ApiClient, server), [(Kind.STACK, ("r", "s", "st"))], 0.2) == [
        "stack/st"
    ]


async def test_the_status_line_counts_the_cells_under_a_realm_a_space_and_a_stack() -> None:
    cells = [(Kind.CELL, ("r", s, st, c)) for s in ("a", "b") for st in ("x", "y") for c in "12"]
    stacks = [(Kind.STACK, ("r", s, st)) for s in ("a", "b") for st in ("x", "y")]
    spaces = [(Kind.SPACE, ("r", s)) for s in ("a", "b")]
    client = cast(ApiClient, DeletingServer([*cells, *stacks, *spaces, (Kind.REALM, ("r",))]))
    assert await wait._cells_left(client, [(Kind.REALM, ("r",))]) == 8
    assert await wait._cells_left(client, [(Kind.SPACE, ("r", "a"))]) == 4
    assert await wait._cells_left(client, [(Kind.STACK, ("r", "b", "y"))]) == 2
    assert await wait._cells_left(client, [(Kind.CELL, ("r", "a", "x", "1"))]) == 0
