"""A shortcut through aiohttp's routing for the resource routes under one path prefix.

aiohttp indexes a route by its path up to the first ``{parameter}``, so every route under
``/apis/kukeon.io/v1beta1/realms/{realm}/...`` (22 of them: each kind's collection,
object and status) sits in one list, and a request is matched against them one regular
expression at a time, in registration order: a GET of a cell tried 10 routes before its
own (~18 µs of a request that costs the server ~300 µs).

``RouteShortcut`` is registered first in that list. It knows the routes registered after
it (``add``) by their number of ``/`` and their literal segments, and tries, in
registration order, only the routes whose literal segments are the request's; the first
that resolves (path and method) answers, as the linear walk would have. When none does
it answers nothing and aiohttp's walk continues over the same routes as before, so a
404, a 405 and its allowed methods are aiohttp's own. A route with a parameter that
could span segments (``{tail:.*}``) cannot be indexed and is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from aiohttp import web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo, _InfoDict
from yarl import URL

Resolved = tuple[UrlMappingMatchInfo | None, set[str]]


class _Indexed(NamedTuple):
    literals: tuple[tuple[int, str], ...]
    """(segment index, text) of every segment that is not a parameter."""
    resource: web.AbstractResource


def _whole_segments(resource: web.AbstractResource) -> bool:
    """Whether each of the resource's parameters is one whole segment (``{name}``).

    The canonical path hides a parameter's own expression (``{tail:.*}`` reads
    ``{tail}``): the resource's pattern must be the one its canonical path compiles to.
    """
    info = resource.get_info()
    pattern = info.get("pattern")
    if pattern is None:
        return "path" in info  # a plain resource: no parameter
    plain = web.DynamicResource(resource.canonical).get_info().get("pattern")
    return plain is not None and plain.pattern == pattern.pattern


def _literals(resource: web.AbstractResource) -> tuple[tuple[int, str], ...]:
    canonical = resource.canonical
    literals: list[tuple[int, str]] = []
    for index, segment in enumerate(canonical.split("/")):
        if "{" not in segment and "}" not in segment:
            literals.append((index, segment))
        elif not (segment.startswith("{") and segment.endswith("}")):
            raise ValueError(f"route {canonical!r}: only whole-segment {{name}} parameters")
    if not _whole_segments(resource):
        raise ValueError(f"route {canonical!r}: only whole-segment {{name}} parameters")
    return tuple(literals)


class RouteShortcut(web.AbstractResource):
    """Resolves a request among the routes ``add``-ed to it by their literal segments."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix
        self._by_depth: dict[int, list[_Indexed]] = {}
        self._added: set[int] = set()

    def add(self, resource: web.AbstractResource) -> None:
        """Index ``resource``, registered on the router after this shortcut."""
        if id(resource) in self._added:
            return  # another method of a path already indexed
        canonical = resource.canonical
        if canonical != self._prefix and not canonical.startswith(f"{self._prefix}/"):
            raise ValueError(f"route {canonical!r} is not under {self._prefix}")
        self._added.add(id(resource))
        depth = canonical.count("/")
        self._by_depth.setdefault(depth, []).append(_Indexed(_literals(resource), resource))

    async def resolve(self, request: web.Request) -> Resolved:
        path = request.rel_url.path_safe  # what aiohttp's resources match
        indexed = self._by_depth.get(path.count("/"))
        if indexed is not None:
            segments = path.split("/")
            for literals, resource in indexed:
                if all(segments[index] == text for index, text in literals):
                    resolved: Resolved = await resource.resolve(request)
                    if resolved[0] is not None:
                        return resolved
        return None, set()

    # --- the rest of AbstractResource: a shortcut has no route and no URL of its own ------

    @property
    def canonical(self) -> str:
        return self._prefix  # aiohttp indexes it with the routes under the prefix

    def url_for(self, **kwargs: str) -> URL:
        raise NotImplementedError("a route shortcut builds no URL")

    def add_prefix(self, prefix: str) -> None:
        raise NotImplementedError("a route shortcut is not for sub-applications")

    def get_info(self) -> _InfoDict:
        return {"prefix": self._prefix}

    def raw_match(self, path: str) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[web.AbstractRoute]:
        return iter(())
