"""A manifest pasted into the console, read into documents the page can write one by one.

The page has no YAML parser of its own (a library for it would be most of its code): it
sends the text here and gets back each document as JSON, with the API paths it is created
at (POST) and replaced at (PUT). Reading is kukectl's own (``kukeon.api.manifests``: YAML
1.2 booleans, duplicate keys refused, ``kind: List`` expanded); validation is not done
here but by the API when the page writes (with ``dryRun=All`` first), so the errors the
page shows, each next to its field path, are the server's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kukeon.api import (
    AnyResource,
    InvalidResource,
    Kind,
    key_of,
    parse_resource,
    to_request_document,
)
from kukeon.api.applying import (
    RecordTooLargeError,
    applied_object,
    stale_manifest_version,
    with_last_applied,
)
from kukeon.api.manifests import _documents, _Unreadable
from kukeon.api.meta import SCOPED_KINDS
from kukeon.client.paths import KINDS, collection_path, object_path

MAX_DOCUMENTS = 500
"""More than this in one paste is refused: the page writes them one request each."""


def _cause(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _text(mapping: Mapping[str, Any], name: str) -> str | None:
    value = mapping.get(name)
    return value if isinstance(value, str) and value else None


def _scope_of(kind: Kind, document: Mapping[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """The parent names of the document, or the causes of the ones missing."""
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if kind in SCOPED_KINDS:
        realm = _text(metadata, "realm")
        if realm is None:
            return [], [_cause("metadata.realm", "required: the realm holding it")]
        space = _text(metadata, "space") or "-"
        stack = _text(metadata, "stack") or "-"
        return [realm, space, stack], []
    spec = document.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    names: list[str] = []
    causes: list[dict[str, str]] = []
    for field in KINDS[kind].parent_fields:
        value = _text(spec, field)
        if value is None:
            causes.append(_cause(f"spec.{field}", "required: the parent it is created under"))
        else:
            names.append(value)
    return names, causes


def _entry(index: int, document: Any) -> dict[str, Any]:
    """One document with its paths, or with the causes that keep it from having any."""
    entry: dict[str, Any] = {"index": index, "document": document, "causes": []}
    if isinstance(document, _Unreadable):
        entry["document"] = None
        entry["causes"] = [_cause("", document.message)]
        return entry
    if not isinstance(document, dict):
        entry["causes"] = [
            _cause("", f"a document must be a mapping, not {type(document).__name__}")
        ]
        return entry
    try:
        kind = Kind(str(document.get("kind")))
    except ValueError:
        known = ", ".join(k.value for k in Kind)
        entry["causes"] = [
            _cause("kind", f"{str(document.get('kind'))[:60]!r} is not one of {known}")
        ]
        return entry
    scope, causes = _scope_of(kind, document)
    metadata = document.get("metadata")
    name = _text(metadata, "name") if isinstance(metadata, dict) else None
    if name is None:
        causes.append(_cause("metadata.name", "required"))
    entry["kind"] = kind.value
    entry["name"] = name
    entry["causes"] = causes
    if not causes and name is not None:
        entry["collection"] = collection_path(kind, scope)
        entry["object"] = object_path(kind, [*scope, name])
    return entry


def read_manifest(text: str) -> list[dict[str, Any]]:
    """Each document of ``text`` in order: ``{index, kind, name, document, collection,
    object, causes}``; ``causes`` (``{field, message}``) says why one cannot be written."""
    entries: list[dict[str, Any]] = []
    for index, document in enumerate(_documents(text)):
        if index >= MAX_DOCUMENTS:
            raise ValueError(f"more than {MAX_DOCUMENTS} documents: apply them with kukectl")
        entries.append(_entry(index, document))
    return entries


def apply_update(body: Any) -> dict[str, Any]:
    """What the page writes of a document by the rule ``kukectl apply`` follows
    (``kukeon.api.applying``), ``body`` being ``{"document": ..., "current": ...}`` as the
    page has them (the current one read through the API with the page's own token: nothing
    is read here for it).

    ``current`` null (the object does not exist): ``{"create": document}``, the manifest
    with its record in ``kukeon.io/last-applied-configuration`` (``with_last_applied``).
    ``current`` an object: ``{"update": document}``, the three-way merge of that record, the
    manifest and the object (``applied_object``), or ``{"update": null}`` when it changes
    nothing. A document that is no valid object goes as it is, so that the write names its
    fields.

    ValueError (a 400) when ``current`` is missing or not an object of the API, or is not
    the same object as ``document``; ApplyRefusedError (a 422) when the record would be too
    large or the merge is no valid object; StaleManifestError (a 409 Conflict) when the
    document carries a resourceVersion that is not the current one
    (``stale_manifest_version``)."""
    if not isinstance(body, dict) or "current" not in body:
        raise ValueError("the body must be {document, current}: current is missing")
    document = body.get("document")
    if not isinstance(document, dict):
        raise ValueError("the body must be {document, current}: document is not a mapping")
    if body["current"] is None:
        return {"create": _creation(document)}
    if not isinstance(body["current"], dict):
        raise ValueError("the body must be {document, current}: current is not a mapping")
    try:
        current = parse_resource(body["current"])
    except InvalidResource as exc:
        raise ValueError(f"current is not an object of the API: {exc}") from None
    try:
        desired = parse_resource(document)
    except InvalidResource:
        # The write reports what is wrong with it, each cause at its field, as a create's.
        return {"update": _over(document, current)}
    if (Kind(desired.kind), key_of(desired)) != (Kind(current.kind), key_of(current)):
        raise ValueError("document and current are not the same object")
    try:
        update = applied_object(desired, current)
    except ValueError as exc:
        raise ApplyRefusedError.of(exc) from None
    if update is None:
        return {"update": None}
    stale = stale_manifest_version(desired, current)
    if stale is not None:
        raise StaleManifestError(stale)
    # Its status goes along and is ignored: a PUT keeps the stored one.
    return {"update": to_request_document(update)}


def _creation(document: dict[str, Any]) -> dict[str, Any]:
    """What Apply creates of ``document``: the manifest recorded in it, as kukectl apply's
    create (a document that is no valid object as it is: the create names its fields)."""
    try:
        desired = parse_resource(document)
    except InvalidResource:
        return document
    try:
        return to_request_document(with_last_applied(desired))
    except ValueError as exc:
        raise ApplyRefusedError.of(exc) from None


class StaleManifestError(Exception):
    """The manifest names a resourceVersion the object is no longer at."""


class ApplyRefusedError(Exception):
    """What Apply would write is no object the API takes (a 422, as kukectl apply's): the
    manifest recorded would take the annotations over their limit, or the merge is no
    valid object. ``causes``: ``(field, message)`` each."""

    def __init__(self, message: str, causes: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.causes = causes

    @classmethod
    def of(cls, exc: ValueError) -> ApplyRefusedError:
        if isinstance(exc, InvalidResource):
            return cls(str(exc), [(cause.field, cause.message) for cause in exc.causes])
        if isinstance(exc, RecordTooLargeError):
            field = "metadata.annotations"
            return cls(str(exc), [(field, str(exc).removeprefix(f"{field}: "))])
        return cls(str(exc), [])


def _over(document: dict[str, Any], current: AnyResource) -> dict[str, Any]:
    """``document`` as it is, guarded by the version read (a write of it is refused)."""
    metadata = document.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    metadata["resourceVersion"] = current.metadata.resource_version
    return {**document, "metadata": metadata}
