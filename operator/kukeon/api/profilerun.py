"""Running a CellProfile: the request, the values of its parameters, the cell it makes.

A run names the profile, optionally the cell and values for parameters; the cell is the
profile's template with every `${NAME}` replaced, placed in the run's realm, space and
stack, named `<prefix>-<6 hex>` unless the run names it, labelled `kukeon.io/profile` and
with `KUKEON_CELL_PROFILE_NAME` in every container's environment. The cell document made
here is then validated and admitted exactly as any cell a client writes (the API server
does it): a profile can give nobody more than a cell would.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from kukeon.api.cellprofile import (
    NAME_SUFFIX_HEX,
    PROFILE_ENV,
    PROFILE_LABEL,
    CellProfile,
    references,
    substitute,
    text_leaves,
)
from kukeon.api.container import OptionalDnsLabel
from kukeon.api.meta import API_VERSION, DnsLabel, Kind, KukeonModel, StringMap, quote
from kukeon.api.validation import FieldError


class CellProfileRun(KukeonModel):
    """The body of a run: which profile, the cell's name (else generated), the values."""

    profile: DnsLabel
    """The profile's name, looked up in the target stack, then space, then realm."""
    name: OptionalDnsLabel = None
    """The cell's name; unset: `<prefix>-<6 hex>`."""
    parameters: StringMap = Field(default_factory=dict)
    """A value for each parameter to set, by name."""


MAX_CELL_BYTES = 1024 * 1024
"""The registry's limit of one document (``kukeon.store.decoding.MAX_DOCUMENT_BYTES``): the
values of a run may not make its cell's texts larger than that."""


class ParameterErrors(ValueError):  # noqa: N818 - a list of field errors, as InvalidResource
    """Values a run gives that do not fit the profile's parameters; each names its field."""

    def __init__(self, causes: list[FieldError]) -> None:
        self.causes = causes
        super().__init__("; ".join(f"{c.field}: {c.message}" for c in causes))


def parameter_values(profile: CellProfile, given: Mapping[str, str]) -> dict[str, str]:
    """Every parameter's value: given, else its default, else empty; ParameterErrors for
    a value of no declared parameter and for a required one not given."""
    declared = {parameter.name: parameter for parameter in profile.spec.parameters}
    causes = [
        FieldError(
            f"parameters.{name}",
            f"profile {quote(profile.metadata.name)} has no parameter {quote(name)}"
            + (f" (it has: {', '.join(sorted(declared))})" if declared else " (it has none)"),
        )
        for name in given
        if name not in declared
    ]
    values: dict[str, str] = {}
    for name, parameter in declared.items():
        if name in given:
            values[name] = given[name]
        elif parameter.required:
            why = "is required by profile " + quote(profile.metadata.name)
            if parameter.description:
                why += f" ({parameter.description})"
            causes.append(FieldError(f"parameters.{name}", why))
        else:
            values[name] = parameter.default or ""
    if causes:
        raise ParameterErrors(causes)
    if causes := _expansion_errors(profile, values):
        raise ParameterErrors(causes)
    return values


def _expansion_errors(profile: CellProfile, values: Mapping[str, str]) -> list[FieldError]:
    """A cause for each parameter whose value, put in at every `${NAME}` of the template,
    takes a share of a cell larger than `MAX_CELL_BYTES`. Counted before the cell is made:
    a 1 MiB value at each of a template's many references is a cell of gigabytes."""
    template = profile.spec.cell.model_dump(mode="json", by_alias=True, exclude_none=True)
    uses: Counter[str] = Counter()
    for _, text, is_key in text_leaves(template, ""):
        if not is_key:  # a map's keys are kept as written (_substituted)
            uses.update(name for name in references(text) if name is not None)
    added = {name: len(values[name].encode()) * count for name, count in uses.items()}
    total = sum(added.values())
    if total <= MAX_CELL_BYTES:
        return []
    return [
        FieldError(
            f"parameters.{name}",
            f"its {len(values[name].encode())} bytes, put in at each of its {uses[name]} "
            f"references in the cell of profile {quote(profile.metadata.name)}, add {size} "
            f"bytes (the values add {total}), over a cell's limit of {MAX_CELL_BYTES} bytes",
        )
        for name, size in sorted(added.items(), key=lambda item: -item[1])
        if size * 100 >= total  # those that make it too large, not a few bytes beside them
    ]


def generated_name(profile: CellProfile) -> str:
    """`<prefix>-<6 random hex digits>`."""
    return f"{profile.prefix()}-{secrets.token_hex(NAME_SUFFIX_HEX // 2)}"


def _substituted(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return substitute(value, values)
    if isinstance(value, dict):
        return {key: _substituted(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_substituted(item, values) for item in value]
    return value


def cell_document(
    profile: CellProfile,
    *,
    scope: tuple[str, str, str],
    name: str,
    values: Mapping[str, str],
) -> dict[str, Any]:
    """The Cell document a run of ``profile`` makes in ``scope`` (realm, space, stack).

    Not validated here: the caller parses it as any cell document, so the cell's rules and
    admission apply to it whole.
    """
    template = profile.spec.cell.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec: dict[str, Any] = _substituted(template, values)
    marker = f"{PROFILE_ENV}="
    for container in spec.get("containers", []):
        env = [entry for entry in container.get("env", []) if not entry.startswith(marker)]
        container["env"] = [*env, marker + profile.metadata.name]
    realm, space, stack = scope
    spec.update(realmId=realm, spaceId=space, stackId=stack)
    return {
        "apiVersion": API_VERSION,
        "kind": Kind.CELL.value,
        "metadata": {"name": name, "labels": {PROFILE_LABEL: profile.metadata.name}},
        "spec": spec,
    }
