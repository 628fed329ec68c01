"""What a resource URL points at: the kind, its parents' names, the name, the subresource.

``route_patterns`` lays out the URLs of a kind under its parents (the node-local routes of
``kukeon.daemon`` hang off them too); ``target_of`` reads a matched request back into a
``Target``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from aiohttp import web

from kukeon.api import Kind
from kukeon.client.paths import API_ROOT, KINDS, display_key

# Path parameter name of each level of the hierarchy.
_LEVEL_PARAMS: Mapping[Kind, str] = {
    Kind.REALM: "realm",
    Kind.SPACE: "space",
    Kind.STACK: "stack",
    Kind.CELL: "cell",
    Kind.NODE: "node",
    Kind.SECRET: "secret",
    Kind.CELL_PROFILE: "cellprofile",
    Kind.CELL_SET: "cellset",
}


class Target(NamedTuple):
    """What a URL points at."""

    kind: Kind
    scope: tuple[str, ...]
    """Parent names from the URL; empty for a cross-parent collection."""
    name: str | None
    subresource: str | None

    @property
    def key(self) -> tuple[str, ...]:
        assert self.name is not None
        return (*self.scope, self.name)

    @property
    def realm(self) -> str | None:
        """The realm the request touches, or None when it spans every realm."""
        if self.kind == Kind.REALM:
            return self.name
        return self.scope[0] if self.scope else None

    def label(self) -> str:
        if self.name is None:
            return f"{KINDS[self.kind].plural} under {display_key(self.scope) or 'every parent'}"
        return f'{self.kind.value.lower()} "{display_key(self.key)}"'


def route_patterns(kind: Kind) -> tuple[str, str]:
    """(collection, object) URL patterns of ``kind`` under its parents."""
    info = KINDS[kind]
    prefix = "".join(f"/{KINDS[p].plural}/{{{_LEVEL_PARAMS[p]}}}" for p in info.parents)
    collection = f"{API_ROOT}{prefix}/{info.plural}"
    return collection, f"{collection}/{{{_LEVEL_PARAMS[kind]}}}"


# The path parameters of each kind's parents, outermost first (asked per request).
_PARENT_PARAMS: Mapping[Kind, tuple[str, ...]] = {
    kind: tuple(_LEVEL_PARAMS[parent] for parent in info.parents) for kind, info in KINDS.items()
}


def target_of(request: web.Request, kind: Kind, *, subresource: str | None = None) -> Target:
    """The target of a request matched on one of ``route_patterns(kind)``."""
    match = request.match_info
    scope = tuple(match[param] for param in _PARENT_PARAMS[kind] if param in match)
    return Target(kind, scope, match.get(_LEVEL_PARAMS[kind]), subresource)
