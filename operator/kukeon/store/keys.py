"""Where each kind lives in etcd: one key prefix per kind, scoped by the parent names.

```
<prefix>/registry/realms/<realm>
<prefix>/registry/spaces/<realm>/<space>
<prefix>/registry/stacks/<realm>/<space>/<stack>
<prefix>/registry/cells/<realm>/<space>/<stack>/<cell>
<prefix>/registry/nodes/<node>
<prefix>/registry/secrets/<realm>/<space or ->/<stack or ->/<secret>
<prefix>/registry/cellprofiles/<realm>/<space or ->/<stack or ->/<profile>
```

A Secret (as a CellProfile) belongs to a realm, a space or a stack, so its key always has
three scope parts and `-` (never a DNS label, so never a real name) stands for "no space" /
"no stack"; the range of a realm, space or stack (`secrets/<realm>/`,
`secrets/<realm>/<space>/`, ...) then holds every Secret within it, which is what a
cascading delete removes.

One prefix per kind lets a kind be listed and watched across all parents with one range.
The kind table is the only place that knows the hierarchy: adding a kind (Node, issue 10)
is one ``KindInfo`` entry, and parents, children and key depths follow from it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from kukeon.api import SCOPED_KINDS, Kind, secret_parent

from .errors import Invalid

DEFAULT_PREFIX = "/kukeon"


class KindInfo(NamedTuple):
    kind: Kind
    plural: str
    parent: Kind | None


KINDS: Mapping[Kind, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo(Kind.REALM, "realms", None),
        KindInfo(Kind.SPACE, "spaces", Kind.REALM),
        KindInfo(Kind.STACK, "stacks", Kind.SPACE),
        KindInfo(Kind.CELL, "cells", Kind.STACK),
        KindInfo(Kind.NODE, "nodes", None),
        # A Secret's parent is its realm, space or stack: see `parent_key`, `child_kinds`.
        KindInfo(Kind.SECRET, "secrets", None),
        KindInfo(Kind.CELL_PROFILE, "cellprofiles", None),
        KindInfo(Kind.CELL_SET, "cellsets", Kind.STACK),
    )
}

_SECRET_SCOPE_DEPTH = 3
_SECRET_HOLDERS = (Kind.REALM, Kind.SPACE, Kind.STACK)


def kind_info(kind: Kind) -> KindInfo:
    try:
        return KINDS[kind]
    except KeyError:
        raise Invalid(f"kind {kind!r} is not stored in the registry") from None


@functools.cache  # the kind table never changes; every key built asks
def scope_depth(kind: Kind) -> int:
    """How many parent names a key of ``kind`` carries before its own name."""
    if kind in SCOPED_KINDS:
        return _SECRET_SCOPE_DEPTH
    depth = 0
    parent = kind_info(kind).parent
    while parent is not None:
        depth += 1
        parent = kind_info(parent).parent
    return depth


def child_kinds(kind: Kind) -> list[Kind]:
    children = [info.kind for info in KINDS.values() if info.parent == kind]
    if kind in _SECRET_HOLDERS:
        children += [scoped for scoped in Kind if scoped in SCOPED_KINDS]
    return children


def parent_key(kind: Kind, key: Sequence[str]) -> tuple[Kind, tuple[str, ...]] | None:
    if kind in SCOPED_KINDS:
        return secret_parent(tuple(key[:-1]))
    parent = kind_info(kind).parent
    if parent is None:
        return None
    return parent, tuple(key[:-1])


def display_name(key: Sequence[str]) -> str:
    return "/".join(key)


def is_key_part(part: str) -> bool:
    """Whether ``part`` can be one name of a key: etcd keys are split at '/', and '.' and
    '..' would read as paths wherever a key becomes one (state directories)."""
    return bool(part) and "/" not in part and part not in {".", ".."}


def _check_parts(kind: Kind, parts: Sequence[str]) -> None:
    for part in parts:
        if not is_key_part(part):
            raise Invalid(f"{kind.value} key {'/'.join(parts)!r}: name {part!r} is not valid")
    if kind in SCOPED_KINDS and len(parts) > 2 and parts[1] == "-" and parts[2] != "-":
        raise Invalid(f"{kind.value} key {'/'.join(parts)!r}: a stack needs its space")


def check_scope(kind: Kind, scope: Sequence[str]) -> None:
    """``Invalid`` unless ``scope`` can hold ``kind``s: at most its parents' names, each a
    key part, and a scoped kind's stack only under a space."""
    depth = scope_depth(kind)
    if len(scope) > depth:
        raise Invalid(
            f"{kind.value} scope {display_name(scope)!r} has more than {depth} parent name(s)"
        )
    _check_parts(kind, scope)


class KeyLayout:
    """Key arithmetic under one prefix (tests give each case its own prefix)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix.rstrip("/")
        self.registry_root = f"{self.prefix}/registry"
        self._kind_prefixes = {
            kind: f"{self.registry_root}/{info.plural}/" for kind, info in KINDS.items()
        }

    def kind_prefix(self, kind: Kind) -> str:
        found = self._kind_prefixes.get(kind)
        return found if found is not None else f"{self.registry_root}/{kind_info(kind).plural}/"

    def key(self, kind: Kind, key: Sequence[str]) -> str:
        depth = scope_depth(kind)
        if len(key) != depth + 1:
            raise Invalid(
                f"{kind.value} key {display_name(key)!r} must have {depth + 1} part(s) "
                f"({depth} parent name(s) and the name)"
            )
        _check_parts(kind, key)
        return self.kind_prefix(kind) + "/".join(key)

    def scope_prefix(self, kind: Kind, scope: Sequence[str]) -> str:
        """The range holding every ``kind`` under ``scope`` (all of them when empty)."""
        check_scope(kind, scope)
        if not scope:
            return self.kind_prefix(kind)
        return self.kind_prefix(kind) + "/".join(scope) + "/"

    def children_prefixes(self, kind: Kind, key: Sequence[str]) -> list[tuple[Kind, str]]:
        """The ranges that hold the direct children of the object at ``key``."""
        return [(child, self.scope_prefix(child, key)) for child in child_kinds(kind)]

    def split(self, kind: Kind, raw_key: bytes | str) -> tuple[str, ...]:
        text = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        head = self.kind_prefix(kind)
        if not text.startswith(head):
            raise ValueError(f"{text!r} is not a {kind.value} key under {head!r}")
        return tuple(text[len(head) :].split("/"))


_DEFAULT_LAYOUT = KeyLayout()


def key_for(kind: Kind, key: tuple[str, ...]) -> str:
    """The etcd key of one object under the default prefix.

    ``key_for(Kind.CELL, ("r", "s", "st", "c")) == "/kukeon/registry/cells/r/s/st/c"``
    """
    return _DEFAULT_LAYOUT.key(kind, key)


def range_end(prefix: bytes) -> bytes:
    """The exclusive end of the range of keys starting with ``prefix``."""
    as_list = bytearray(prefix)
    for index in range(len(as_list) - 1, -1, -1):
        if as_list[index] < 0xFF:
            as_list[index] += 1
            return bytes(as_list[: index + 1])
    return b"\0"
