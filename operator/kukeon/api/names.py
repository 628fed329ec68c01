"""The API's names: its group and version, the kinds, and the parents a manifest defaults to.

Plain Python, no pydantic: a client that only reads what the server answers (``kukectl
get``'s tables, URL paths, completion) needs these names without defining the models.
:mod:`kukeon.api.meta` and the package itself export them with the models.
"""

from __future__ import annotations

from enum import StrEnum

GROUP = "kukeon.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
# The spelling kukeon's own manifests use; accepted on input, never written.
LEGACY_API_VERSION = VERSION

# kukeon's default realm, space and stack: a manifest that omits a parent id lands there.
DEFAULT_PARENT = "default"


class Kind(StrEnum):
    """The kinds of the hierarchy that are stored as documents of their own."""

    REALM = "Realm"
    SPACE = "Space"
    STACK = "Stack"
    CELL = "Cell"
    NODE = "Node"
    SECRET = "Secret"
    CELL_PROFILE = "CellProfile"
    CELL_SET = "CellSet"


SCOPED_KINDS: frozenset[Kind] = frozenset({Kind.SECRET, Kind.CELL_PROFILE})
"""Kinds whose parents are in their metadata (`realm`, optionally `space`, `stack`): a
realm's, a space's or a stack's, with `-` for "no space" / "no stack" in key and URL."""

SCOPE_PLACEHOLDER = "-"
"""Stands for "no space" / "no stack" in a Secret's key (never a DNS label, so no clash)."""
