"""The objects the node routes act on, read once and refused one way.

Every node route (logs, exec, attach, kill, cp, port-forward, stats, images) starts from a
cell or a realm named in its URL. A missing one is the resource API's own 404 (`Cell
'realm/space/stack/name' not found`), so a client sees one wording whichever route it
called; a container the cell does not have names the ones it has.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from kukeon.api import Cell, Kind, Realm
from kukeon.apiserver.status import ApiError, from_store_error
from kukeon.store import NotFound, Registry


def cell_key_of(request: web.Request) -> tuple[str, str, str, str]:
    m = request.match_info
    return (m["realm"], m["space"], m["stack"], m["cell"])


async def cell_of(registry: Registry, request: web.Request) -> Cell:
    """The cell the request's URL names (404 as the resource API answers it)."""
    try:
        found = await registry.get(Kind.CELL, cell_key_of(request))
    except NotFound as error:
        raise from_store_error(error, kind=Kind.CELL.value) from None
    assert isinstance(found, Cell)
    return found


async def realm_of(registry: Registry, name: str) -> Realm:
    try:
        found = await registry.get(Kind.REALM, (name,))
    except NotFound as error:
        raise from_store_error(error, kind=Kind.REALM.value) from None
    assert isinstance(found, Realm)
    return found


def no_such_container(cell: Cell, wanted: str, ids: Sequence[str]) -> ApiError:
    """404 for a container `cell` lacks, naming those it has."""
    return ApiError(
        404,
        f"cell {cell.metadata.name} has no container {wanted[:200]!r} "
        f"(containers: {', '.join(ids)})",
        kind="Container",
        name=wanted[:200],
    )
