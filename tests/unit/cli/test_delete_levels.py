"""`kukectl delete -f` of a whole app (a realm, its space, stack and cell): each level is gone
before its parent is deleted, since a parent is refused (409) while a child deleted just
before it still finalizes (every parent of such a manifest was refused before)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from kukeon.api import AnyResource, Kind
from kukeon.cli.delete import _delete_targets, _Deletion
from kukeon.cli.wait import Target
from kukeon.client.apiclient import ApiClient, ApiRequestError, ClientWatchEvent

from .test_wait_gone import stored

APP: list[Target] = [
    (Kind.CELL, ("shop", "front", "web", "api")),
    (Kind.STACK, ("shop", "front", "web")),
    (Kind.SPACE, ("shop", "front")),
    (Kind.REALM, ("shop",)),
]


class FinalizingServer:
    """Each deleted object stays readable for two more reads (its finalizer runs); a
    parent's deletion is refused while any object under it is stored."""

    def __init__(self, stored: list[Target]) -> None:
        self.stored = {key: kind for kind, key in stored}
        self.finalizing: dict[tuple[str, ...], int] = {}
        self.deleted: list[tuple[str, ...]] = []

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        reads = self.finalizing.get(key)
        if reads is not None:
            if reads == 0:
                del self.stored[key], self.finalizing[key]
            else:
                self.finalizing[key] = reads - 1
        if key not in self.stored:
            raise ApiRequestError(404, "NotFound", f"{kind.value} {key} not found")
        return stored(kind, key, 10)

    async def watch(
        self, kind: Kind, scope: tuple[str, ...], **options: Any
    ) -> AsyncIterator[ClientWatchEvent]:
        """The wait's watch of one object being deleted: its finalizer ends, it is gone."""
        key = (*scope, options["name"])
        self.stored.pop(key, None)
        self.finalizing.pop(key, None)
        yield ClientWatchEvent("DELETED", stored(kind, key, 11), 11)

    async def delete(self, kind: Kind, key: tuple[str, ...], **_: Any) -> None:
        children = [k for k in self.stored if len(k) > len(key) and k[: len(key)] == key]
        if children:
            raise ApiRequestError(409, "Conflict", f"{key} still has children {children}")
        self.finalizing[key] = 2
        self.deleted.append(key)


async def test_delete_f_of_a_whole_app_waits_for_each_level_before_its_parent() -> None:
    server = FinalizingServer(APP)
    how = _Deletion(
        cascade=False, orphan=False, wait=True, timeout=60, ignore_not_found=False, server_dry=False
    )
    assert await _delete_targets(cast(ApiClient, server), APP, [], how)
    assert server.deleted == [key for _, key in APP]
    assert server.stored == {}
