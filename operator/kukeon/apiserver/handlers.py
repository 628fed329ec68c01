"""The resource routes: get, list, watch, create, replace, patch and delete of every kind.

One ``ResourceHandlers`` serves every kind: the URL tells the kind, its parents'
names and the subresource (``Target``); the handler checks the caller's rights first
(nothing is read from the body or written before that), makes the body agree with the URL
(parent ids are filled from the URL when absent and refused when they disagree), validates
it with ``kukeon.api.parse_resource`` so every invalid field is reported at once, checks
what a non-admin's write asks of the host against its realm's security level (``admission``;
for a patch, on the patched object), and only then writes to the registry. ``?dryRun=All``
runs every check and stops before the write.

The handlers are put together from one module per concern: ``target`` (what a URL points
at), ``request`` (the caller, the body, the selectors), ``handlerbase`` (authorization,
admission, store errors), ``resourcereads`` (get, list, watch; the watch protocol is
``watchstream``'s), ``writerules`` (the body against its URL, validation, the rules
beyond admission), ``resourcewrites`` (create, replace, patch, delete, cascades) and
``profileruns`` (a cell made from a CellProfile, written as any cell) and ``quotausage``
(a realm's quota and its use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from kukeon.api import Kind
from kukeon.apiserver.profileruns import ProfileRuns
from kukeon.apiserver.quotausage import QUOTA_SUBRESOURCE, QuotaUsageReads
from kukeon.apiserver.request import PRINCIPAL_KEY, check_accept, is_watch, principal_of
from kukeon.apiserver.resourcereads import ResourceReads
from kukeon.apiserver.routeindex import RouteShortcut
from kukeon.apiserver.target import Target, route_patterns, target_of
from kukeon.client.paths import API_ROOT, KINDS

__all__ = [
    "PRINCIPAL_KEY",
    "ResourceHandlers",
    "Target",
    "is_watch",
    "principal_of",
    "route_patterns",
]


class ResourceHandlers(ResourceReads, ProfileRuns, QuotaUsageReads):
    """aiohttp handlers for every kind, bound to one registry."""

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        # Before the routes under the realms: aiohttp would try them one by one (routeindex).
        under_realms = f"{API_ROOT}/{KINDS[Kind.REALM].plural}"
        shortcut = RouteShortcut(under_realms)
        router.register_resource(shortcut)
        for kind in KINDS:
            collection, obj = route_patterns(kind)
            routes = [
                router.add_get(collection, self._bind(self.list_or_watch, kind)),
                router.add_post(collection, self._bind(self.create, kind)),
                router.add_get(obj, self._bind(self.get, kind)),
                router.add_put(obj, self._bind(self.replace, kind)),
                router.add_patch(obj, self._bind(self.patch, kind)),
                router.add_delete(obj, self._bind(self.delete, kind)),
                router.add_get(f"{obj}/status", self._bind(self.get, kind, "status")),
                router.add_put(f"{obj}/status", self._bind(self.replace, kind, "status")),
                router.add_patch(f"{obj}/status", self._bind(self.patch, kind, "status")),
            ]
            if kind == Kind.REALM:
                quota = self._bind(self.quota, kind, QUOTA_SUBRESOURCE)
                routes.append(router.add_get(f"{obj}/{QUOTA_SUBRESOURCE}", quota))
            for route in routes:
                if route.resource is not None and route.resource.canonical.startswith(under_realms):
                    shortcut.add(route.resource)
            if KINDS[kind].parents:
                cross = f"{API_ROOT}/{KINDS[kind].plural}"
                router.add_get(cross, self._bind(self.list_or_watch, kind))
        self.add_profile_routes(app)

    @staticmethod
    def _bind(
        handler: Callable[[web.Request, Target], Any], kind: Kind, subresource: str | None = None
    ) -> Callable[[web.Request], Any]:
        async def bound(request: web.Request) -> web.StreamResponse:
            check_accept(request)
            result: web.StreamResponse = await handler(
                request, target_of(request, kind, subresource=subresource)
            )
            return result

        return bound
