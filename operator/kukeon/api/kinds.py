"""The kinds as a whole: parsing a document into its model, writing it back, its key.

`parse_resource` is the one gate for documents from outside (manifests, API requests): it
runs every rule and raises `InvalidResource` listing all of them. `scope_of`, `parent_of`
and `key_of` give the place of a resource in the hierarchy, which is also its etcd key.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kukeon.api.cell import Cell
from kukeon.api.cellprofile import CellProfile, template_errors
from kukeon.api.cellset import CellSet, cellset_errors
from kukeon.api.meta import API_VERSION, LEGACY_API_VERSION, Kind, Resource
from kukeon.api.node import Node
from kukeon.api.realm import REVEAL_CONTEXT, Realm
from kukeon.api.secret import SCOPE_PLACEHOLDER, Secret
from kukeon.api.space import Space
from kukeon.api.stack import Stack
from kukeon.api.validation import (
    KUBERNETES_KINDS,
    FieldError,
    InvalidResource,
    Location,
    cross_field_errors,
    dedupe,
    display_name,
    droppable_unknown,
    field_errors_from_pydantic,
    format_path,
    in_document_order,
    without,
)

KIND_MODELS: dict[Kind, type[Resource[Any, Any]]] = {
    Kind.REALM: Realm,
    Kind.SPACE: Space,
    Kind.STACK: Stack,
    Kind.CELL: Cell,
    Kind.NODE: Node,
    Kind.SECRET: Secret,
    Kind.CELL_PROFILE: CellProfile,
    Kind.CELL_SET: CellSet,
}

# A resource of any kind, for code that handles all kinds alike (`Resource` is generic).
AnyResource = Resource[Any, Any]


_DROP_ROUNDS = 4
"""Validations a lenient parse runs at most: the fields dropped after one may have hidden
others (a field whose object was of the wrong type), never more than a few levels."""


def parse_resource(
    doc: Mapping[str, Any], *, unknown_fields: list[str] | None = None
) -> AnyResource:
    """Validate one document and return its typed model; raise `InvalidResource` otherwise.

    Every error of the document is reported, not only the first. `apiVersion` may be
    `v1beta1` (kukeon's spelling) or `kukeon.io/v1beta1`.

    ``unknown_fields``: when a list, the fields no model knows are left out of the model
    instead of refused, and their paths (as sent: `spec.foo`) appended to it (the API's
    ``fieldValidation=Warn|Ignore``, kukectl's ``--validate=warn|ignore``); ``doc`` itself
    is not changed. Anything else wrong is refused as ever.
    """
    for _ in range(_DROP_ROUNDS):
        dropped: list[Location] = []
        resource = _parse(doc, dropped if unknown_fields is not None else None)
        if resource is not None:
            return resource
        assert unknown_fields is not None  # only a lenient parse drops
        unknown_fields.extend(format_path(loc, as_sent=True) for loc in dropped)
        doc = without(doc, dropped)
    return parse_resource(doc)  # still unknown fields after every round: refused


def _parse(doc: Mapping[str, Any], drop: list[Location] | None) -> AnyResource | None:
    """``parse_resource``'s one validation; None when ``drop`` is a list and fields no
    model knows were found (their locations appended to it) to be dropped first."""
    if not isinstance(doc, Mapping):
        raise InvalidResource(
            "?",
            "<unnamed>",
            [FieldError("", f"a document must be a mapping, got {type(doc).__name__}")],
        )
    raw_kind = doc.get("kind")
    try:
        kind = Kind(str(raw_kind))
    except ValueError:
        expected = ", ".join(k.value for k in Kind)
        ours = KUBERNETES_KINDS.get(str(raw_kind))
        # `kind: cell`: kinds are matched as written, as Kubernetes' are.
        spelled = {k.value.lower(): k.value for k in Kind}.get(str(raw_kind).lower())
        hint = f" (kukeon's is {ours})" if ours else ""
        hint = hint or (f" (kinds are case-sensitive: {spelled})" if spelled else "")
        cause = (
            "required"
            if raw_kind is None
            else f"unknown kind {raw_kind!r}{hint}, expected one of {expected}"
        )
        raise InvalidResource(
            str(raw_kind or "?"), display_name(Kind.REALM, doc), [FieldError("kind", cause)]
        ) from None
    errors: list[FieldError] = []
    if "apiVersion" not in doc:
        errors.append(FieldError("apiVersion", f"required ({API_VERSION} or {LEGACY_API_VERSION})"))
    errors.extend(cross_field_errors(kind, doc))
    if kind == Kind.CELL_PROFILE:
        errors.extend(template_errors(doc))
    if kind == Kind.CELL_SET:
        errors.extend(cellset_errors(doc))
    try:
        resource = KIND_MODELS[kind].model_validate(dict(doc))
    except ValidationError as exc:
        # A field a rule above explains (a template's identity) is not also "unknown".
        explained = {error.field for error in errors}
        if drop is not None and (unknown := droppable_unknown(exc, doc, explained)):
            drop.extend(unknown)
            return None
        errors = [e for e in field_errors_from_pydantic(exc) if e.field not in explained] + errors
    if errors:
        ordered = in_document_order(errors, doc)
        raise InvalidResource(kind.value, display_name(kind, doc), dedupe(ordered))
    return resource


def to_document(res: AnyResource) -> dict[str, Any]:
    """The JSON-able camelCase document of a resource, with the full apiVersion."""
    return res.model_dump(mode="json", by_alias=True, exclude_none=True)


def to_request_document(res: AnyResource) -> dict[str, Any]:
    """The document a client sends to create or update ``res``: as `to_document`, plus the
    values no response carries (a Secret's `data`, inline registry passwords).

    Only for a client's own manifests on their way to the API; never for a response.
    """
    document: dict[str, Any] = res.model_dump(
        mode="json", by_alias=True, exclude_none=True, context={REVEAL_CONTEXT: True}
    )
    if isinstance(res, Secret):
        values = res.values()
        if values is not None:
            document["data"] = {
                key: base64.b64encode(value).decode() for key, value in values.items()
            }
    return document


def scope_of(res: AnyResource) -> tuple[str, ...]:
    """The names of the resource's parents, outermost first."""
    spec = res.spec
    if isinstance(res, Realm | Node):
        return ()
    if isinstance(res, Space):
        return (spec.realm_id,)
    if isinstance(res, Stack):
        return (spec.realm_id, spec.space_id)
    if isinstance(res, Cell | CellSet):
        return (spec.realm_id, spec.space_id, spec.stack_id)
    if isinstance(res, Secret | CellProfile):
        # Always three parts: "-" stands for "no space" / "no stack" (see api.secret).
        return res.metadata.scope()
    raise TypeError(f"not a kukeon resource: {type(res).__name__}")


_PARENT_KIND = {
    Kind.SPACE: Kind.REALM,
    Kind.STACK: Kind.SPACE,
    Kind.CELL: Kind.STACK,
    Kind.CELL_SET: Kind.STACK,
}


def parent_of(res: AnyResource) -> tuple[Kind, tuple[str, ...]] | None:
    """The parent's kind and full key, or None for a realm."""
    if isinstance(res, Secret | CellProfile):
        return secret_parent(scope_of(res))
    parent_kind = _PARENT_KIND.get(Kind(res.kind))
    if parent_kind is None:
        return None
    return parent_kind, scope_of(res)


def secret_parent(scope: tuple[str, ...]) -> tuple[Kind, tuple[str, ...]]:
    """The realm, space or stack a Secret or CellProfile of ``scope`` (realm, space|"-",
    stack|"-") is in."""
    named = tuple(part for part in scope if part != SCOPE_PLACEHOLDER)
    return (Kind.REALM, Kind.SPACE, Kind.STACK)[len(named) - 1], named


def key_of(res: AnyResource) -> tuple[str, ...]:
    """The resource's full key: its parents' names, then its own."""
    return (*scope_of(res), res.metadata.name)
