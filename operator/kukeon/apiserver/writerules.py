"""What a write's body must satisfy before admission and the registry see it.

The body is made to agree with its URL (``prepare``: kind, name, parent ids and a
Secret's scope are filled from the URL when absent and refused when they differ) and
validated through ``kukeon.api`` with every invalid field reported at once (``parse``).
Beyond validity, a client may not add a finalizer (``check_finalizers``) nor set what
kukeond would ignore (``check_acted_on``), and what it asks to store must fit the
registry's size limit (``check_size``, for dry runs: a real write is refused by the
registry itself).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from kukeon.api import (
    API_VERSION,
    SCOPE_PLACEHOLDER,
    AnyResource,
    Cell,
    InvalidResource,
    Kind,
    Secret,
    parse_resource,
    to_document,
)
from kukeon.api.container import containerd_container_id
from kukeon.api.meta import quote
from kukeon.apiserver.paths import KINDS
from kukeon.apiserver.status import ApiError, Cause
from kukeon.apiserver.target import Target
from kukeon.store import MAX_DOCUMENT_BYTES


def prepare(body: Any, target: Target, *, name_from_url: bool) -> dict[str, Any]:
    """Make the body agree with the URL: kind, name and parent ids."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a {target.kind.value} object")
    document = dict(body)
    causes = _agree_kind(document, target)
    document.setdefault("apiVersion", API_VERSION)
    metadata = document.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ApiError(
            400, "metadata must be an object", causes=[Cause("metadata", "must be an object")]
        )
    metadata = dict(metadata)
    if name_from_url and target.name is not None:
        causes.extend(_agree_name(metadata, target.name))
    document["metadata"] = metadata
    if target.kind == Kind.SECRET:
        causes.extend(_secret_scope_from_url(metadata, target.scope))
    spec = document.get("spec")
    if spec is None:
        spec = {}
    if isinstance(spec, dict):
        spec = dict(spec)
        causes.extend(_agree_parents(spec, target))
        document["spec"] = spec
    if causes:
        raise ApiError(
            400,
            f"{target.kind.value} does not match the URL: "
            + "; ".join(f"{c.field}: {c.message}" for c in causes),
            kind=target.kind.value,
            name=target.name or metadata.get("name"),
            causes=causes,
        )
    return document


def _agree_kind(document: dict[str, Any], target: Target) -> list[Cause]:
    kind = document.get("kind")
    if kind is None:
        document["kind"] = target.kind.value
    elif kind != target.kind.value:
        return [Cause("kind", f"must be {target.kind.value} on this URL, got {quote(kind)}")]
    return []


def _agree_name(metadata: dict[str, Any], from_url: str) -> list[Cause]:
    name = metadata.get("name")
    if not name:
        metadata["name"] = from_url
    elif name != from_url:
        why = f"must be {quote(from_url)} (the name in the URL), got {quote(name)}"
        return [Cause("metadata.name", why)]
    return []


def _agree_parents(spec: dict[str, Any], target: Target) -> list[Cause]:
    causes: list[Cause] = []
    for field, parent in zip(KINDS[target.kind].parent_fields, target.scope, strict=False):
        given = spec.get(field)
        if given in (None, ""):
            spec[field] = parent
        elif given != parent:
            why = f"must be {parent!r} (the parent in the URL), got {quote(given)}"
            causes.append(Cause(f"spec.{field}", why))
    return causes


def _secret_scope_from_url(metadata: dict[str, Any], scope: tuple[str, ...]) -> list[Cause]:
    """Fill a Secret's metadata.realm/space/stack from its URL (`-`: none), or say why not."""
    causes: list[Cause] = []
    for level, from_url in zip(("realm", "space", "stack"), scope, strict=False):
        wanted = None if from_url == SCOPE_PLACEHOLDER else from_url
        given = metadata.get(level) or None
        if given is None and wanted is not None:
            metadata[level] = wanted
        elif given != wanted:
            shown = (
                repr(wanted) if wanted is not None else f"unset ({SCOPE_PLACEHOLDER} in the URL)"
            )
            causes.append(
                Cause(f"metadata.{level}", f"must be {shown} (the URL), got {quote(given)}")
            )
    return causes


def parse(document: Mapping[str, Any]) -> AnyResource:
    """The resource, or a 422 naming every invalid field."""
    try:
        return parse_resource(document)
    except InvalidResource as exc:
        raise ApiError(
            422,
            f'{exc.kind} "{exc.name}" is invalid: '
            + "; ".join(f"{c.field}: {c.message}" if c.field else c.message for c in exc.causes),
            kind=exc.kind,
            name=exc.name,
            causes=[Cause(c.field, c.message) for c in exc.causes],
        ) from None


def base64_values(secret: Secret) -> dict[str, str]:
    """A Secret's values as its ``data`` (in memory only: no document shows them)."""
    values = secret.values() or {}
    return {key: base64.b64encode(value).decode() for key, value in values.items()}


def check_finalizers(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """A client may remove a finalizer (to free an object whose owner is gone for good), never
    add one: each is a promise that a kukeond will release it, and one nobody keeps would
    hold a deletion (and `kukectl delete --wait`) for ever. kukeond sets its own through the
    registry, not through this API."""
    kept = set(current.metadata.finalizers) if current is not None else set()
    added = sorted(set(res.metadata.finalizers) - kept)
    if added:
        why = (
            f"cannot add {', '.join(quote(name) for name in added)}: only kukeond adds "
            "finalizers (and releases them); a client may only remove one"
        )
        raise ApiError(
            422,
            f"{target.label()}: metadata.finalizers: {why}",
            reason="Invalid",
            kind=target.kind.value,
            name=target.name,
            causes=[Cause("metadata.finalizers", why)],
        )


_NOT_ACTED_ON = {
    "ports": "publishing ports is not implemented yet",
    "networks": "joining other spaces' networks is not implemented yet",
    "cniConfigPath": "a container's own CNI configuration is not implemented yet (a space's "
    "spec.cniConfigPath is)",
}
"""Container fields the model loads (kukeon manifests carry them) but kukeond does not act
on: a write that sets or changes one is refused, so nobody believes it works."""


def check_acted_on(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """Refuse what a write asks that kukeond would ignore, or that only kukeon decides: the
    fields of `_NOT_ACTED_ON`, and a `containerdId` other than the derived one. Compared with
    the stored object, so a document written before these rules stays writable as long as
    the write leaves those values as they were."""
    if not isinstance(res, Cell):
        return
    before = {c.id: c for c in current.spec.containers} if isinstance(current, Cell) else {}
    causes: list[Cause] = []
    for index, container in enumerate(res.spec.containers):
        path = f"spec.containers[{index}]"
        old = before.get(container.id)
        fields = {"ports", "networks", "cni_config_path"}
        written = container.model_dump(by_alias=True, include=fields)
        kept = old.model_dump(by_alias=True, include=fields) if old else {}
        for field, why in _NOT_ACTED_ON.items():
            if written.get(field) and written.get(field) != kept.get(field):
                causes.append(Cause(f"{path}.{field}", why))
        derived = containerd_container_id(
            space=res.spec.space_id, stack=res.spec.stack_id, cell=res.metadata.name,
            container=container.id,
        )  # fmt: skip
        given = container.containerd_id
        if given and given != derived and given != (old.containerd_id if old else None):
            why = f"is derived by kukeon ({quote(derived)}): leave it out"
            causes.append(Cause(f"{path}.containerdId", why))
    if causes:
        raise ApiError(
            422,
            f"{target.label()}: " + "; ".join(f"{c.field}: {c.message}" for c in causes),
            reason="Invalid",
            kind=target.kind.value,
            name=target.name or res.metadata.name,
            causes=causes,
        )


def check_size(res: AnyResource, target: Target) -> None:
    """The registry's size limit, checked before a dry run answers."""
    size = len(json.dumps(to_document(res), separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_DOCUMENT_BYTES:
        why = f"the document is {size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit"
        raise ApiError(
            422,
            f"{target.label()}: {why}",
            kind=target.kind.value,
            name=target.name,
            causes=[Cause("", why)],
        )
