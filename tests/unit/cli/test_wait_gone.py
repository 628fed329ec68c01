"""kukectl's wait for deletion on a terminal: its status line counted the cells under a
realm or a space by listing cells with that scope (a ValueError: `kukectl delete space X
--cascade --wait` failed as an unexpected failure once the first read found the space still
there); the cells are counted stack by stack."""

from __future__ import annotations

from typing import Any, cast

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli import wait
from kukeon.cli.wait import Target
from kukeon.client.apiclient import ApiClient, ApiRequestError, ObjectList
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
    """Stored objects; lists check their scope as the client's paths do."""

    def __init__(self, objects: list[Target]) -> None:
        self.objects = {key: kind for kind, key in objects}

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
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


async def test_the_status_line_counts_the_cells_under_a_realm_a_space_and_a_stack() -> None:
    cells = [(Kind.CELL, ("r", s, st, c)) for s in ("a", "b") for st in ("x", "y") for c in "12"]
    stacks = [(Kind.STACK, ("r", s, st)) for s in ("a", "b") for st in ("x", "y")]
    spaces = [(Kind.SPACE, ("r", s)) for s in ("a", "b")]
    client = cast(ApiClient, DeletingServer([*cells, *stacks, *spaces, (Kind.REALM, ("r",))]))
    assert await wait._cells_left(client, [(Kind.REALM, ("r",))]) == 8
    assert await wait._cells_left(client, [(Kind.SPACE, ("r", "a"))]) == 4
    assert await wait._cells_left(client, [(Kind.STACK, ("r", "b", "y"))]) == 2
    assert await wait._cells_left(client, [(Kind.CELL, ("r", "a", "x", "1"))]) == 0
