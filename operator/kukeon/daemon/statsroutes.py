"""Resource figures of this node and its cells, for ``kukectl top`` (node-local routes).

```
GET .../realms/{r}/spaces/{s}/stacks/{st}/cells/{c}/stats[?containers=true]
    one cell's figures, served by the cell's node (forwarded there by any node)
GET /apis/kukeon.io/v1beta1/nodes/{node}/stats[?realm=R[&space=S[&stack=ST]]][&cells=false]
    [&containers=true]
    the node's own figures and those of its running cells in the scope (forwarded to
    the node by any node)
```

Figures are read when asked (``kukeon.daemon.usage``): CPU time is cumulative seconds, so
a rate is the difference of two answers divided by the difference of their ``timestamp``
(``kukectl top`` asks twice, a second apart). Memory is the working set (and the usage
the kernel charges, page cache included), pids the tasks of the cgroup. A cell that has no
cgroup on its node (not running yet) is a ``409``; a stopped one keeps its cgroup, so
named it has its zeros (``docker stats NAME``), and it is no row of the node form.

Reading needs ``get`` on the cell's realm (viewers may); the node form lists cells of
every realm, so an editor, who sees only its realms, must name one (``realm=``) unless it
asks for the node's own figures only (``cells=false``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from kukeon.api import API_VERSION, Kind
from kukeon.apiserver.auth import Role, Verb, denial
from kukeon.apiserver.handlers import principal_of, route_patterns
from kukeon.apiserver.status import ApiError
from kukeon.daemon.lookups import cell_key_of, cell_of
from kukeon.runtime.hostusage import HostUsage, read_host_usage
from kukeon.store import Invalid, Registry

from .usage import CellUsage, Usage, UsageReader, local_cells

SUBRESOURCE = "stats"
_SCOPE_PARAMS = ("realm", "space", "stack")


def _authorize(request: web.Request, *, verb: Verb, realm: str | None) -> None:
    why = denial(principal_of(request), verb=verb, realm=realm, subresource=SUBRESOURCE)
    if why is not None:
        raise ApiError(403, f"Forbidden: {why}")


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    text = query.get(name)
    if text is None:
        return default
    if text.lower() in {"1", "true", "yes"}:
        return True
    if text.lower() in {"", "0", "false", "no"}:
        return False
    raise ApiError(400, f"{name}: {text[:40]!r} is not true or false")


def _time(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def usage_document(usage: Usage) -> dict[str, Any]:
    return {
        "cpuUsageSeconds": usage.cpu_seconds,
        "memoryWorkingSetBytes": usage.memory_working_set_bytes,
        "memoryUsageBytes": usage.memory_usage_bytes,
        "memoryLimitBytes": usage.memory_limit_bytes,
        "pids": usage.pids,
    }


def cell_document(cell: CellUsage, *, containers: bool) -> dict[str, Any]:
    realm, space, stack, name = cell.key
    document: dict[str, Any] = {
        "realm": realm,
        "space": space,
        "stack": stack,
        "cell": name,
        "node": cell.node,
        "cgroup": cell.cgroup,
        "timestamp": _time(cell.timestamp),
        **usage_document(cell.usage),
    }
    if containers:
        document["containers"] = [
            {"name": container.name, **usage_document(container.usage)}
            for container in cell.containers
        ]
    return document


def host_document(host: HostUsage) -> dict[str, Any]:
    return {
        "cpus": host.cpus,
        "cpuUsageSeconds": host.cpu_usage_seconds,
        "memoryTotalBytes": host.memory_total_bytes,
        "memoryAvailableBytes": host.memory_available_bytes,
        "memoryUsedBytes": host.memory_used_bytes,
        "loadAverage": list(host.load_average),
    }


def _scope(query: Mapping[str, str]) -> tuple[str, ...]:
    scope: list[str] = []
    for position, name in enumerate(_SCOPE_PARAMS):
        value = query.get(name)
        if value is None:
            if any(query.get(deeper) is not None for deeper in _SCOPE_PARAMS[position + 1 :]):
                raise ApiError(
                    400, f"{name}: required with {', '.join(_SCOPE_PARAMS[position + 1 :])}"
                )
            break
        scope.append(value)
    return tuple(scope)


def authorize_node_stats(request: web.Request) -> tuple[str, ...]:
    """Refuse (403) a node-stats request its caller may not make; its cells' scope.

    Also run by the forwarding middleware before it sends the request on: the node that
    answers sees the fleet token, not the caller, so it cannot narrow an editor's view.
    """
    query = request.query
    with_cells = _flag(query, "cells", True)
    scope = _scope(query)
    if with_cells and not scope and principal_of(request).role == Role.EDITOR:
        raise ApiError(
            403,
            "Forbidden: an editor sees only its realms' cells: name one (realm=), or ask "
            "for the node's own figures only (cells=false)",
        )
    _authorize(request, verb="list" if with_cells else "get", realm=scope[0] if scope else None)
    return scope


class StatsRoutes:
    """The ``stats`` routes of one kukeond that runs cells."""

    def __init__(self, *, registry: Registry, reader: UsageReader) -> None:
        self.registry = registry
        self.reader = reader

    @property
    def node_name(self) -> str:
        return self.reader.node_name

    def add_routes(self, app: web.Application) -> None:
        _, cell_path = route_patterns(Kind.CELL)
        _, node_path = route_patterns(Kind.NODE)
        app.router.add_get(f"{cell_path}/{SUBRESOURCE}", self.cell_stats)
        app.router.add_get(f"{node_path}/{SUBRESOURCE}", self.node_stats)

    async def cell_stats(self, request: web.Request) -> web.StreamResponse:
        key = cell_key_of(request)
        name = "/".join(key)
        found = await cell_of(self.registry, request, SUBRESOURCE)
        containers = _flag(request.query, "containers", False)
        usage = await self.reader.cell(key, [container.id for container in found.spec.containers])
        if usage is None:
            raise ApiError(
                409,
                f"cell {name} has no cgroup on node {self.node_name}: it is not running here "
                f"(state {found.status.state})",
            )
        return web.json_response(
            {
                "kind": "CellStats",
                "apiVersion": API_VERSION,
                **cell_document(usage, containers=containers),
            }
        )

    async def node_stats(self, request: web.Request) -> web.StreamResponse:
        node = request.match_info["node"]
        if node != self.node_name:
            # The forwarding middleware sends other nodes' requests there; only a request
            # already forwarded once (the nodes disagree on names) arrives here.
            raise ApiError(404, f"this is node {self.node_name}, not node {node}")
        query = request.query
        with_cells = _flag(query, "cells", True)
        containers = _flag(query, "containers", False)
        scope = authorize_node_stats(request)
        cells: list[CellUsage] = []
        if with_cells:
            try:
                listing = await self.registry.list(Kind.CELL, scope)
            except Invalid as error:
                raise ApiError(400, str(error)) from None
            found = await self.reader.cells(local_cells(listing.items, self.node_name))
            # Running cells: a stopped one keeps its (empty) cgroup, and is no row of `top`.
            cells = [cell for cell in found if cell.usage.pids != 0]
        host = await asyncio.to_thread(read_host_usage)
        document: dict[str, Any] = {
            "kind": "NodeStats",
            "apiVersion": API_VERSION,
            "node": self.node_name,
            "timestamp": _time(datetime.now(UTC)),
            **host_document(host),
        }
        if with_cells:
            document["cells"] = [cell_document(cell, containers=containers) for cell in cells]
        return web.json_response(document)
