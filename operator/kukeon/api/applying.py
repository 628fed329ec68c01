"""What an apply writes over an object that exists: the manifest's part, the rest kept.

One rule for every client that applies a manifest (``kukectl apply``, ``diff`` and
``edit``, the web console's Apply): only spec, labels and annotations are the manifest's;
status, finalizers and identity stay as stored, and so do the spec fields and annotations
the system fills in (a cell's ``nodeName`` once scheduled, a realm's admin-owned limits,
``kukeon.io/`` annotations) when the manifest leaves them out. Left out of the update they
would be cleared: a cell re-applied as it was written would be unscheduled and started
again.

``kukectl apply`` merges three ways (``applied_object``, kubectl's client-side apply): it
records the fields a manifest named in the object's annotation
``kukeon.io/last-applied-configuration`` and, at the next apply, sets what the manifest
names, removes what the recorded one named and this one no longer does, and keeps every
other field as stored, whoever wrote it (``kukectl label``, ``stop``, ``set env``;
``kukeon.api.threeway``). ``updated_object`` is the two-way rule of a whole object read
back and edited (``kukectl edit``, an applied ``get -o yaml``): the document replaces what a
manifest owns.
"""

from __future__ import annotations

import json
from typing import Any

from kukeon.api import (
    API_VERSION,
    AnyResource,
    Kind,
    Secret,
    key_status,
    parse_resource,
    to_document,
    to_request_document,
)
from kukeon.api.labelrules import ANNOTATIONS_MAX_BYTES
from kukeon.api.profilerun import MAX_CELL_BYTES
from kukeon.api.realm import REVEAL_CONTEXT
from kukeon.api.threeway import three_way

# Spec fields the system (or an admin) fills in after creation; an apply that leaves them
# out keeps them. A realm's securityLevel, quota and limits are the admin's: an editor re-applying
# the realm's manifest must not be refused for "changing" them back to the default.
SERVER_OWNED_SPEC_FIELDS: dict[Kind, frozenset[str]] = {
    Kind.CELL: frozenset({"nodeName"}),
    Kind.REALM: frozenset({"securityLevel", "quota", "limits"}),
}
# Annotations under this prefix are written by kukeon itself (the scheduler's
# `kukeon.io/scheduled-by`, `kukectl restart`'s `kukeon.io/restartedAt`): an apply that does
# not mention one keeps it, as kubectl keeps what other managers own.
SYSTEM_ANNOTATION_PREFIX = "kukeon.io/"


def _spec_document(res: AnyResource) -> dict[str, Any]:
    # With the values a manifest carries (inline registry passwords): a changed one is sent.
    spec = to_request_document(res).get("spec", {})
    return spec if isinstance(spec, dict) else {}


def _updated_secret(desired: Secret, current: AnyResource) -> AnyResource | None:
    """A Secret is unchanged when its labels, annotations and values (by digest) are."""
    values = desired.values()
    same_values = values is None or key_status(values) == current.status
    if (
        same_values
        and desired.metadata.labels == current.metadata.labels
        and desired.metadata.annotations == current.metadata.annotations
    ):
        return None
    metadata = desired.metadata.model_copy(
        update={"resource_version": current.metadata.resource_version}
    )
    return desired.model_copy(update={"metadata": metadata})


def _template_annotations(spec: dict[str, Any]) -> dict[str, Any]:
    found: Any = spec
    for field in ("template", "metadata", "annotations"):
        found = found.get(field) if isinstance(found, dict) else None
    return found if isinstance(found, dict) else {}


def _keep_system_template_annotations(desired: dict[str, Any], current: dict[str, Any]) -> None:
    """A set template's `kukeon.io/` annotations (`rollout restart`'s `restartedAt`) survive
    an apply that does not name them, as kubectl's apply keeps them: dropping one would
    roll every cell of the set again."""
    kept = {
        key: value
        for key, value in _template_annotations(current).items()
        if key.startswith(SYSTEM_ANNOTATION_PREFIX)
    }
    if not kept or not isinstance(desired.get("template"), dict):
        return
    metadata = desired["template"].setdefault("metadata", {})
    metadata["annotations"] = kept | _template_annotations(desired)


def updated_object(desired: AnyResource, current: AnyResource) -> AnyResource | None:
    """What to PUT so ``current`` matches ``desired``, or None when nothing differs.

    Only what a manifest owns is compared and written: spec, labels, annotations. Status,
    finalizers and identity stay as stored; the resourceVersion read is the CAS guard.
    """
    kind = Kind(desired.kind)
    if isinstance(desired, Secret):
        return _updated_secret(desired, current)
    desired_spec = _spec_document(desired)
    current_spec = _spec_document(current)
    for field in SERVER_OWNED_SPEC_FIELDS.get(kind, frozenset()):
        if field not in desired_spec and field in current_spec:
            desired_spec[field] = current_spec[field]
    if kind == Kind.CELL_SET:
        _keep_system_template_annotations(desired_spec, current_spec)
    annotations = {
        key: value
        for key, value in current.metadata.annotations.items()
        if key.startswith(SYSTEM_ANNOTATION_PREFIX)
    } | dict(desired.metadata.annotations)
    same = (
        desired_spec == current_spec
        and desired.metadata.labels == current.metadata.labels
        and annotations == current.metadata.annotations
    )
    if same:
        return None
    document = to_document(current)
    document["spec"] = desired_spec
    document["metadata"]["labels"] = dict(desired.metadata.labels)
    document["metadata"]["annotations"] = annotations
    return parse_resource(document)


def stale_manifest_version(desired: AnyResource, current: AnyResource) -> str | None:
    """Why a manifest that carries a resourceVersion (a `get -o yaml` kept and edited) is
    not applied over ``current``, or None: it is applied only over that version, as
    kubectl's apply is; applied over a newer one, it would undo what someone else wrote
    since, unseen (a 409 Conflict naming ``metadata.resourceVersion``)."""
    given = desired.metadata.resource_version
    if not given or given == current.metadata.resource_version:
        return None
    return (
        f"metadata.resourceVersion: the manifest's {given[:40]!r} is not the current "
        f"{current.metadata.resource_version} (the object has been modified since it "
        "was read); apply your changes to the latest version, or leave "
        "metadata.resourceVersion out of the manifest"
    )


LAST_APPLIED_ANNOTATION = SYSTEM_ANNOTATION_PREFIX + "last-applied-configuration"
"""The fields `kukectl apply` last wrote from a manifest, as compact JSON (kubectl's
`kubectl.kubernetes.io/last-applied-configuration`): the manifest's name, scope, labels,
annotations and spec as it named them, a registry password as `***`, a Secret's values never
(nor their digests: a viewer reads annotations)."""
_RECORDED_METADATA = ("name", "realm", "space", "stack", "labels", "annotations")
_MERGED_METADATA = ("labels", "annotations")


class RecordTooLargeError(ValueError):
    """The manifest, recorded in ``LAST_APPLIED_ANNOTATION``, would take the object's
    annotations over ``ANNOTATIONS_MAX_BYTES``: refused before anything is written."""


def _named_fields(res: AnyResource, *, reveal: bool) -> dict[str, Any]:
    """The fields the manifest named (what was validated from it, defaults left out), in its
    own shape; ``reveal``: an inline registry password as itself, else `***`."""
    dumped = res.model_dump(
        mode="json", by_alias=True, exclude_unset=True, context={REVEAL_CONTEXT: reveal}
    )
    given = dumped.get("metadata") or {}
    metadata = {field: given[field] for field in _RECORDED_METADATA if field in given}
    if isinstance(metadata.get("annotations"), dict):
        metadata["annotations"] = {
            key: value
            for key, value in metadata["annotations"].items()
            if key != LAST_APPLIED_ANNOTATION
        }
    named: dict[str, Any] = {"apiVersion": API_VERSION, "kind": str(res.kind), "metadata": metadata}
    # A Secret's `data`/`stringData` are excluded from every dump: never recorded.
    named.update({field: dumped[field] for field in ("spec", "type") if field in dumped})
    return named


def last_applied(res: AnyResource, *, system_annotations: bool = True) -> str:
    """The record of manifest ``res`` for ``LAST_APPLIED_ANNOTATION`` (keys sorted: the same
    manifest gives the same text). ``system_annotations`` False: its `kukeon.io/` annotations
    left out of the record (an edited object's, which kukeon wrote, not the user)."""
    named = _named_fields(res, reveal=False)
    metadata = named["metadata"]
    if not system_annotations and isinstance(metadata.get("annotations"), dict):
        metadata["annotations"] = {
            key: value
            for key, value in metadata["annotations"].items()
            if not key.startswith(SYSTEM_ANNOTATION_PREFIX)
        }
    return json.dumps(named, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def recorded(res: AnyResource) -> dict[str, Any] | None:
    """What the last apply of ``res`` named, or None: never applied, or a record that is not
    a JSON object (edited by hand), read as none."""
    text = res.metadata.annotations.get(LAST_APPLIED_ANNOTATION)
    if text is None:
        return None
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def _annotations_size(annotations: dict[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())


def _with_record(annotations: dict[str, str], record: str) -> dict[str, str]:
    own = {key: value for key, value in annotations.items() if key != LAST_APPLIED_ANNOTATION}
    if (size := _annotations_size(own)) > ANNOTATIONS_MAX_BYTES:
        # Over without any record: said as the server says it, not blamed on the record
        # (whose advice, `create -f` or `edit`, would be refused the same).
        raise RecordTooLargeError(
            f"metadata.annotations: {size} bytes of keys and values, more than "
            f"{ANNOTATIONS_MAX_BYTES} (without the record apply adds); nothing was written"
        )
    if (whole := len(record.encode())) > MAX_CELL_BYTES:
        # The object itself is over what the registry stores: `create -f` and `edit`, the
        # advice below, would be refused too (413), so that is said instead.
        raise RecordTooLargeError(
            f"the manifest is {whole} bytes (as compact JSON), more than the {MAX_CELL_BYTES} "
            "bytes the server stores of one object; nothing was written"
        )
    noted = {**annotations, LAST_APPLIED_ANNOTATION: record}
    size = _annotations_size(noted)
    if size > ANNOTATIONS_MAX_BYTES:
        raise RecordTooLargeError(
            f"metadata.annotations: with the manifest recorded in {LAST_APPLIED_ANNOTATION} "
            f"they would be {size} bytes, more than the {ANNOTATIONS_MAX_BYTES} an object "
            "may carry; nothing was written (make the manifest smaller, or write the object "
            "with `kukectl create -f` or `kukectl edit`, which record nothing)"
        )
    return noted


def _recorded_in(res: AnyResource, record: str) -> AnyResource:
    annotations = _with_record(dict(res.metadata.annotations), record)
    metadata = res.metadata.model_copy(update={"annotations": annotations})
    return res.model_copy(update={"metadata": metadata})


def with_last_applied(res: AnyResource) -> AnyResource:
    """Manifest ``res`` as `apply` creates it: the manifest recorded in its annotations
    (RecordTooLargeError past the limit). A manifest read back (it carries a resourceVersion)
    keeps the record it carries."""
    if res.metadata.resource_version:
        return res
    return _recorded_in(res, last_applied(res))


def with_edit_recorded(res: AnyResource) -> AnyResource:
    """Object ``res`` as `kukectl edit --save-config` writes it: its labels, annotations and
    spec as edited recorded as the last apply's (kubectl's `edit --save-config`, which
    records the edited object), the record it carried replaced (RecordTooLargeError past the
    limit). Its `kukeon.io/` annotations are not recorded: the scheduler's or `restart`'s,
    shown in the editor, they are no manifest's, and a later apply that does not name them
    would remove them."""
    return _recorded_in(res, last_applied(res, system_annotations=False))


def _section(document: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    found = document.get(name) if document is not None else None
    return found if isinstance(found, dict) else None


def _merged_spec(
    kind: Kind, original: dict[str, Any] | None, modified: dict[str, Any], live: dict[str, Any]
) -> dict[str, Any]:
    spec = three_way(original, modified, live)
    for field in SERVER_OWNED_SPEC_FIELDS.get(kind, frozenset()):
        if field not in modified and field in live:
            spec[field] = live[field]  # the scheduler's, the admin's: never cleared by absence
    template, named = spec.get("template"), modified.get("template")
    names_cell = isinstance(named, dict) and "spec" in named
    resolved = kind == Kind.CELL_SET and bool(spec.get("profile")) and not names_cell
    if resolved and isinstance(template, dict):
        # The profile's cell is the server's to fill in: left out, it is resolved again.
        spec["template"] = {key: value for key, value in template.items() if key != "spec"}
    return spec


def applied_object(desired: AnyResource, current: AnyResource) -> AnyResource | None:
    """What `kukectl apply` PUTs of manifest ``desired`` over ``current``, or None when that
    changes nothing: a three-way merge (see the module) of the record of the last apply, the
    manifest and the stored object, with the manifest recorded anew. Raises ValueError when
    the record would be too large (``RecordTooLargeError``) or the merge is no valid object.

    A manifest that carries a resourceVersion is an object read back (`get -o yaml`, kept
    and edited): applied whole as ``updated_object`` does, the record left as stored.
    """
    if desired.metadata.resource_version:
        return updated_object(desired, current)
    kind = Kind(desired.kind)
    original = recorded(current)
    modified = _named_fields(desired, reveal=True)
    stored = to_document(current)
    meta = three_way(
        _section(original, "metadata"),
        {k: v for k, v in modified["metadata"].items() if k in _MERGED_METADATA},
        {field: stored["metadata"].get(field, {}) for field in _MERGED_METADATA},
    )
    labels = dict(meta.get("labels") or {})
    annotations = _with_record(dict(meta.get("annotations") or {}), last_applied(desired))
    unchanged_meta = (
        labels == current.metadata.labels and annotations == current.metadata.annotations
    )
    if isinstance(desired, Secret):
        return _applied_secret(desired, current, labels, annotations, unchanged_meta)
    live_spec = stored.get("spec", {})
    spec = _merged_spec(kind, _section(original, "spec"), modified.get("spec", {}), live_spec)
    document = {**stored, "spec": spec}
    document["metadata"] = {**stored["metadata"], "labels": labels, "annotations": annotations}
    merged = parse_resource(document)
    if unchanged_meta and _spec_document(merged) == _spec_document(current):
        return None
    return merged


def _applied_secret(
    desired: Secret,
    current: AnyResource,
    labels: dict[str, str],
    annotations: dict[str, str],
    unchanged_meta: bool,
) -> AnyResource | None:
    """A Secret's labels and annotations merged; its values, when the manifest gives them,
    replace the stored set (compared by digest), else the stored ones stay."""
    values = desired.values()
    if unchanged_meta and (values is None or key_status(values) == current.status):
        return None
    metadata = desired.metadata.model_copy(
        update={
            "resource_version": current.metadata.resource_version,
            "labels": labels,
            "annotations": annotations,
        }
    )
    return desired.model_copy(update={"metadata": metadata})
