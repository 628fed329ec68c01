"""The URL layout of the API, shared by the server's router and the client.

Kubernetes-style: every kind lives under its parents, so a URL names the full key of an
object, and each kind is also listed across all parents at the group-version root::

    /apis/kukeon.io/v1beta1/realms/{realm}
    /apis/kukeon.io/v1beta1/realms/{realm}/spaces/{space}
    /apis/kukeon.io/v1beta1/realms/{realm}/spaces/{space}/stacks/{stack}
    /apis/kukeon.io/v1beta1/realms/{realm}/spaces/{space}/stacks/{stack}/cells/{cell}
    /apis/kukeon.io/v1beta1/nodes/{node}                   (fleet-wide, no parent)
    /apis/kukeon.io/v1beta1/realms/{realm}/spaces/{space|-}/stacks/{stack|-}/secrets/{secret}
    /apis/kukeon.io/v1beta1/realms/{realm}/spaces/{space|-}/stacks/{stack|-}/cellprofiles/{profile}
    /apis/kukeon.io/v1beta1/{spaces|stacks|cells|secrets|cellprofiles}  (every parent)
    /apis/kukeon.io/v1beta1/realms/{realm}/spaces/{space}/stacks/{stack}/profileruns
        (POST: a cell made from a CellProfile, see ``apiserver.profileruns``)

A Secret (as a CellProfile) is scoped to a realm, a space or a stack; `-` stands for "no
space" / "no stack" in its URL, as in its etcd key (`/realms/r/spaces/-/stacks/-/secrets/api`
is realm r's).

Each object path has a ``/status`` subresource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from kukeon.api.names import GROUP, VERSION, Kind

DEFAULT_SOCKET = Path("/run/kukeon/kukeond.sock")
"""The API's unix socket when kukeond's run directory is the default."""

API_ROOT = f"/apis/{GROUP}/{VERSION}"


LOG_STREAM_HEADER = "Kukeon-Log-Stream"
"""The log route's answer header saying which stream it holds when it holds one only
(``Stdout``, ``Stderr``: its ``stream`` parameter); a server that does not know the
parameter sends both, without it."""


class KindInfo(NamedTuple):
    kind: Kind
    plural: str
    parents: tuple[Kind, ...]
    """Kinds of the key's leading parts, outermost first."""
    parent_fields: tuple[str, ...]
    """Spec fields (camelCase) holding the parent names, in the same order."""
    aliases: tuple[str, ...]


KINDS: Mapping[Kind, KindInfo] = {
    Kind.REALM: KindInfo(Kind.REALM, "realms", (), (), ("realm", "realms")),
    Kind.SPACE: KindInfo(
        Kind.SPACE, "spaces", (Kind.REALM,), ("realmId",), ("space", "spaces", "sp")
    ),
    Kind.STACK: KindInfo(
        Kind.STACK,
        "stacks",
        (Kind.REALM, Kind.SPACE),
        ("realmId", "spaceId"),
        ("stack", "stacks", "st"),
    ),
    Kind.CELL: KindInfo(
        Kind.CELL,
        "cells",
        (Kind.REALM, Kind.SPACE, Kind.STACK),
        ("realmId", "spaceId", "stackId"),
        ("cell", "cells", "ce"),
    ),
    Kind.NODE: KindInfo(Kind.NODE, "nodes", (), (), ("node", "nodes", "no")),
    # A Secret's parents are in its metadata (realm, space, stack), not its spec.
    Kind.SECRET: KindInfo(
        Kind.SECRET, "secrets", (Kind.REALM, Kind.SPACE, Kind.STACK), (), ("secret", "secrets")
    ),
    Kind.CELL_PROFILE: KindInfo(
        Kind.CELL_PROFILE,
        "cellprofiles",
        (Kind.REALM, Kind.SPACE, Kind.STACK),
        (),
        ("cellprofile", "cellprofiles", "profile", "profiles", "cp"),
    ),
    Kind.CELL_SET: KindInfo(
        Kind.CELL_SET,
        "cellsets",
        (Kind.REALM, Kind.SPACE, Kind.STACK),
        ("realmId", "spaceId", "stackId"),
        ("cellset", "cellsets", "cs"),
    ),
}

HIERARCHY: tuple[Kind, ...] = (Kind.REALM, Kind.SPACE, Kind.STACK, Kind.CELL)
"""Parents before children: the order in which a set of objects can be created."""

_BY_ALIAS: Mapping[str, Kind] = {
    alias: info.kind
    for info in KINDS.values()
    for alias in (*info.aliases, info.kind.value.lower())
}


def kind_for_alias(name: str) -> Kind | None:
    """``cells``, ``cell``, ``ce`` or ``Cell`` -> Kind.CELL; None when unknown."""
    return _BY_ALIAS.get(name.lower())


def _segments(kind: Kind, names: Sequence[str]) -> str:
    """Path segments for the first ``len(names)`` levels of ``kind``'s hierarchy."""
    levels = (*KINDS[kind].parents, kind)
    return "".join(
        f"/{KINDS[level].plural}/{quote(name, safe='')}"
        for level, name in zip(levels, names, strict=False)
    )


def collection_path(kind: Kind, scope: Sequence[str] = ()) -> str:
    """The collection of ``kind`` under ``scope``; an empty scope means every parent.

    ``scope`` must be empty or name every parent of ``kind``.
    """
    info = KINDS[kind]
    if scope and len(scope) != len(info.parents):
        raise ValueError(f"{kind.value} scope needs {len(info.parents)} names, got {tuple(scope)}")
    return f"{API_ROOT}{_segments(kind, scope)}/{info.plural}"


def object_path(kind: Kind, key: Sequence[str], subresource: str | None = None) -> str:
    info = KINDS[kind]
    if len(key) != len(info.parents) + 1:
        raise ValueError(f"{kind.value} key needs {len(info.parents) + 1} names, got {tuple(key)}")
    path = f"{API_ROOT}{_segments(kind, key)}"
    return f"{path}/{subresource}" if subresource else path


PROFILE_RUNS = "profileruns"


def profile_runs_path(realm: str, space: str, stack: str) -> str:
    """Where a run of a CellProfile is POSTed: under the stack its cell goes to."""
    return f"{API_ROOT}{_segments(Kind.STACK, (realm, space, stack))}/{PROFILE_RUNS}"


def display_key(key: Sequence[str]) -> str:
    """``("default", "default", "web")`` -> ``default/default/web``."""
    return "/".join(key)
