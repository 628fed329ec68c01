"""The objects the node routes act on, read once and refused one way.

Every node route (logs, exec, attach, kill, cp, port-forward, stats, images) starts from a
cell or a realm named in its URL. A missing one is the resource API's own 404 (`Cell
'realm/space/stack/name' not found`), so a client sees one wording whichever route it
called; a container the cell does not have names the ones it has. A caller refused the
URL's realm is refused (403) before anything is read, as by the resource API: a 404 for a
missing cell and a 403 for an existing one told an editor which cells other realms have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from kukeon.api import Cell, Kind, Realm
from kukeon.apiserver.auth import Verb, denial
from kukeon.apiserver.request import principal_of
from kukeon.apiserver.status import ApiError, from_store_error
from kukeon.store import NotFound, Registry

CELL_SUBRESOURCES: Mapping[str, Verb] = {
    "log": "get",
    "exec": "create",
    "kill": "update",
    "attach": "create",
    "stats": "get",
    "cp": "create",
    "portforward": "create",
}
"""The node-local routes of a cell and the verb each needs."""


def cell_key_of(request: web.Request) -> tuple[str, str, str, str]:
    m = request.match_info
    return (m["realm"], m["space"], m["stack"], m["cell"])


def authorize_cell_route(request: web.Request, subresource: str) -> None:
    """Refuse (403) a caller who may not use ``subresource`` of a cell in the URL's realm;
    asked before the cell is read, so the answer says nothing of what the realm holds."""
    realm = request.match_info["realm"]
    verb = CELL_SUBRESOURCES[subresource]
    why = denial(principal_of(request), verb=verb, realm=realm, subresource=subresource)
    if why is not None:
        raise ApiError(403, f"Forbidden: {why}")


async def cell_of(registry: Registry, request: web.Request, subresource: str) -> Cell:
    """The cell the request's URL names, for its route ``subresource`` (403 for a caller
    refused it, then 404 as the resource API answers a missing cell)."""
    authorize_cell_route(request, subresource)
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
