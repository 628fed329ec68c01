"""A CellSet's template from a CellProfile (`spec.profile`, `spec.params`), resolved at the write.

The API server resolves the profile as a run does: found in the set's stack, then space,
then realm (``profilelookup``), its parameters given their values and its cell made with
every `${NAME}` replaced (``kukeon.api.profilerun``). The cell's spec becomes the set's
`spec.template.spec` and its label (`kukeon.io/profile`) joins the template's labels; the
set is then validated again whole and, after this, admitted as the writing user exactly as
a set with that template written inline (``handlerbase._admit``): a profile gives nobody
more than a template they could write. What is stored is an ordinary set with its template
filled in, so the set controller, the template hash, revisions and `rollout` read it as
any other.

When it is resolved: at a write that leaves `spec.template.spec` out (a manifest naming a
profile: every `kukectl apply` of it resolves again, and the set rolls if the profile
changed meanwhile), and at a write that changes `spec.profile` or `spec.params`. A write
carrying the stored `spec.template.spec` back unchanged with the same profile and values
(`get -o yaml` then apply, `kukectl edit`, `scale`) keeps it: a set, like a cell made by
`kukectl run --profile`, does not follow later edits of its profile by itself. Beside a
profile, a `spec.template.spec` that is neither the stored one nor the profile's is refused
(422): it would otherwise be replaced without a word.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from kukeon.api import AnyResource, CellProfile, CellSet, InvalidResource, parse_resource
from kukeon.api import to_document as document_of
from kukeon.api.cellprofile import CELL_IDENTITY_FIELDS, references, text_leaves
from kukeon.api.imagefields import image_errors
from kukeon.api.meta import quote
from kukeon.api.profilerun import ParameterErrors, cell_document, parameter_values
from kukeon.apiserver.profilelookup import find_profile, not_found
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.status import ApiError, Cause

log = logging.getLogger(__name__)

TEMPLATE_SPEC = "spec.template.spec"


def _invalid(res: CellSet, causes: list[Cause]) -> ApiError:
    return ApiError(
        422,
        f'CellSet "{res.metadata.name}" is invalid: '
        + "; ".join(f"{c.field}: {c.message}" for c in causes),
        reason="Invalid",
        kind=str(res.kind),
        name=res.metadata.name,
        causes=causes,
    )


def _kept(res: CellSet, previous: CellSet | None) -> bool:
    """Whether the write carries the stored template back with the same profile and values."""
    return (
        previous is not None
        and res.spec.template.spec is not None
        and res.spec.template.spec == previous.spec.template.spec
        and res.spec.profile == previous.spec.profile
        and res.spec.params == previous.spec.params
    )


async def resolve_profile(
    registry: RegistryApi, res: AnyResource, current: AnyResource | None
) -> AnyResource:
    """``res`` with its template resolved from its profile when it names one and the write
    asks for it (see the module); any other resource as it is. A 422 names `spec.profile`
    (no such profile), `spec.params.NAME` (a value the profile refuses, or that makes its
    cell invalid) or `spec.template.spec` (another template beside the profile)."""
    if not isinstance(res, CellSet) or res.spec.profile is None:
        return res
    previous = current if isinstance(current, CellSet) else None
    if _kept(res, previous):
        return res
    scope = (res.spec.realm_id, res.spec.space_id, res.spec.stack_id)
    profile = await find_profile(registry, res.spec.profile, scope)
    if profile is None:
        raise _invalid(res, [Cause("spec.profile", not_found(res.spec.profile, scope))])
    try:
        values = parameter_values(profile, res.spec.params)
    except ParameterErrors as exc:
        causes = [
            Cause("spec." + c.field.replace("parameters.", "params.", 1), c.message)
            for c in exc.causes
        ]
        raise _invalid(res, causes) from None
    resolved = _resolved(res, profile, values, previous)
    given = res.spec.template.spec
    known = [resolved.spec.template.spec, previous.spec.template.spec if previous else None]
    if given is not None and given not in known:
        why = (
            f"is the cell of profile {quote(profile.metadata.name)}, filled in by the "
            "server: leave it out (or remove spec.profile to write the template here)"
        )
        raise _invalid(res, [Cause(TEMPLATE_SPEC, why)])
    log.debug("cellset %s: template from profile %s", res.metadata.name, profile.metadata.name)
    return resolved


def _resolved(
    res: CellSet, profile: CellProfile, values: dict[str, str], previous: CellSet | None
) -> CellSet:
    """The set with the cell a run of ``profile`` makes as its template, validated whole:
    the model, and its images as every write's (``imagerules``; one the stored template
    already had is let through), so a value that makes either invalid is blamed on its
    parameter."""
    scope = (res.spec.realm_id, res.spec.space_id, res.spec.stack_id)
    cell = cell_document(profile, scope=scope, name=res.metadata.name, values=values)
    spec = {key: value for key, value in cell["spec"].items() if key not in CELL_IDENTITY_FIELDS}
    labels = {**res.spec.template.metadata.labels, **cell["metadata"]["labels"]}
    document = document_of(res)
    document["spec"]["template"] = {"metadata": {"labels": labels}, "spec": spec}
    try:
        parsed = parse_resource(document)
    except InvalidResource as exc:
        causes = [Cause(c.field, c.message) for c in exc.causes]
        raise _invalid(res, list(_blamed(causes, profile))) from None
    assert isinstance(parsed, CellSet)
    images = [Cause(e.field, e.message) for e in image_errors(parsed, previous)]
    if images:
        raise _invalid(res, list(_blamed(images, profile)))
    return parsed


def _blamed(causes: Iterable[Cause], profile: CellProfile) -> Iterable[Cause]:
    """Each error in the resolved template, named after the parameters whose values the
    field holds (`spec.params.NAME`), else after the field with the profile's name."""
    template = profile.spec.cell.model_dump(mode="json", by_alias=True, exclude_none=True)
    leaves = [(path, text) for path, text, _ in text_leaves(template, TEMPLATE_SPEC)]
    for cause in causes:
        if not cause.field.startswith(TEMPLATE_SPEC):
            yield cause
            continue
        inside = (cause.field + ".", cause.field + "[")
        names = sorted(
            {
                name
                for path, text in leaves
                if path == cause.field or path.startswith(inside)
                for name in references(text)
                if name is not None
            }
        )
        why = f"{cause.field}: {cause.message}"
        if names:
            yield from (Cause(f"spec.params.{name}", f"makes {why}") for name in names)
        else:
            yield Cause(cause.field, f"{cause.message} (in profile {quote(profile.metadata.name)})")
