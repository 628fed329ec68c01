"""What an apply writes over an object that exists: the manifest's part, the rest kept.

One rule for every client that applies a manifest (``kukectl apply``, ``diff`` and
``edit``, the web console's Apply): only spec, labels and annotations are the manifest's;
status, finalizers and identity stay as stored, and so do the spec fields and annotations
the system fills in (a cell's ``nodeName`` once scheduled, a realm's admin-owned limits,
``kukeon.io/`` annotations) when the manifest leaves them out. Left out of the update they
would be cleared: a cell re-applied as it was written would be unscheduled and started
again.
"""

from __future__ import annotations

from typing import Any

from kukeon.api import (
    AnyResource,
    Kind,
    Secret,
    key_status,
    parse_resource,
    to_document,
    to_request_document,
)

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
