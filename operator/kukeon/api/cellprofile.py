"""The CellProfile: a cell template of a realm, space or stack, run as many cells.

Scoped as a Secret is (`metadata.realm` always, `metadata.space` and `metadata.stack` to
narrow it, `-` standing for "none" in its key and URL); `kukectl run --profile NAME` looks
it up in the target stack, then space, then realm (`api.secret.lookup_scopes`).

`spec.cell` is a cell's spec without its identity: no `id`, `realmId`, `spaceId`,
`stackId` (the run's target gives them), and no container's `realmId`, `spaceId`,
`stackId`, `cellId` or `containerdId` either. `spec.parameters` declares the names that
may appear as `${NAME}` in the template's text values; `$${` stands for a literal `${`.
Every reference must name a declared parameter: the profile is refused otherwise, the
error naming the field that holds it. What a run does with the template is
`kukeon.api.profilerun`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import Field

from kukeon.api.cell import TERMINATION_GRACE_MAX, CellTty, OptionalDnsSubdomain
from kukeon.api.container import ContainerSpec, OptionalDnsLabel
from kukeon.api.meta import (
    DNS_LABEL_MAX,
    Bool,
    Int,
    Kind,
    KukeonModel,
    NullableList,
    OptionalString,
    Resource,
    StringMap,
    quote,
)
from kukeon.api.secret import SecretMeta
from kukeon.api.states import DesiredCellState
from kukeon.api.validation import FieldError, cross_field_errors

PROFILE_LABEL = "kukeon.io/profile"
"""The label a cell made from a profile carries: the profile's name."""
PROFILE_ENV = "KUKEON_CELL_PROFILE_NAME"
"""The environment variable every container of such a cell gets: the profile's name."""
NAME_SUFFIX_HEX = 6
"""A generated cell name is `<prefix>-<6 hex digits>`."""
PREFIX_MAX = DNS_LABEL_MAX - NAME_SUFFIX_HEX - 1

PARAMETER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_PARAMETER_NAME = re.compile(PARAMETER_NAME_PATTERN[1:-1])
# `$${` is a literal `${`; `${NAME}` a reference; a `${` left open is an error.
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")

CELL_IDENTITY_FIELDS = ("id", "realmId", "spaceId", "stackId")
"""The cell's identity: given by the run's target and name, never by the template."""
CONTAINER_IDENTITY_FIELDS = ("realmId", "spaceId", "stackId", "cellId", "containerdId")
"""A container's identity, derived from its cell's."""


class CellProfileMeta(SecretMeta):
    """A CellProfile's metadata: its scope (`realm`, optionally `space`, then `stack`)."""


class ProfileParameter(KukeonModel):
    """One name a run may give a value to, used as `${NAME}` in the template."""

    name: str = Field(pattern=PARAMETER_NAME_PATTERN, max_length=DNS_LABEL_MAX)
    """Letters, digits and `_`, not starting with a digit (as a shell variable)."""
    default: str | None = None
    """The value when the run gives none (unset: the empty text)."""
    required: Bool = False
    """A run must give a value (then there is no default)."""
    description: OptionalString = None
    """What the value is for, shown by `kukectl describe`."""


class CellTemplate(KukeonModel):
    """A cell's spec without its identity (see `CellSpec` for each field)."""

    root_container_id: OptionalDnsLabel = None
    """The root container; else the one with root: true, else the first."""
    tty: CellTty | None = None
    """Which attachable container `attach` picks by default."""
    containers: NullableList[ContainerSpec]
    auto_delete: Bool = False
    """Delete the cell once its root container has exited (after it was Ready)."""
    nested_cgroup_runtime: Bool = False
    """Delegate every cgroup controller the host offers, for a runtime nested inside."""
    host_users: Bool | None = None
    """false: the cell's containers run in a user namespace (see `CellSpec`)."""
    desired_state: DesiredCellState = DesiredCellState.RUNNING
    """Running, or Stopped: containers stopped but the cell kept."""
    termination_grace_period_seconds: Int | None = Field(
        default=None, ge=0, le=TERMINATION_GRACE_MAX
    )
    """Seconds between the stop signal and SIGKILL; kukeond's (10 s) when unset."""
    node_name: OptionalDnsSubdomain = None
    """The node that runs the cell; unset: the scheduler chooses."""
    node_selector: StringMap = Field(default_factory=dict)
    """Labels a node must carry to be chosen for the cell."""


class CellProfileSpec(KukeonModel):
    prefix: OptionalDnsLabel = Field(default=None, max_length=PREFIX_MAX)
    """The generated cell names' start (`<prefix>-<6 hex>`); unset: the profile's name."""
    parameters: NullableList[ProfileParameter] = Field(default_factory=list)
    """The names a run may give values to (`kukectl run --profile P --param NAME=VALUE`)."""
    cell: CellTemplate
    """The spec of every cell made from the profile, `${NAME}` replaced by values."""


class CellProfileStatus(KukeonModel):
    """Empty: a profile is a template, nothing runs it on a host."""


class CellProfile(Resource[CellProfileSpec, CellProfileStatus]):
    kind: Literal[Kind.CELL_PROFILE] = Kind.CELL_PROFILE
    metadata: CellProfileMeta
    spec: CellProfileSpec
    status: CellProfileStatus = Field(default_factory=CellProfileStatus)

    def prefix(self) -> str:
        """The generated cell names' start: `spec.prefix`, else the profile's name (cut)."""
        return self.spec.prefix or self.metadata.name[:PREFIX_MAX].rstrip("-")


# --- references: `${NAME}` in text ----------------------------------------------------------


def references(text: str) -> Iterator[str | None]:
    """The parameter names ``text`` refers to, in order; None for a `${` left open."""
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token == "$${":
            continue
        yield match.group(1) if token.endswith("}") else None


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each `${NAME}` replaced by ``values[NAME]`` and `$${` by `${`.

    The caller has checked every reference (`template_errors`); an unknown one is a KeyError.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        if not token.endswith("}"):
            raise KeyError(token)
        return values[match.group(1)]

    return _TOKEN.sub(replace, text)


def text_leaves(value: Any, path: str) -> Iterator[tuple[str, str, bool]]:
    """Every text of a JSON-like value with its field path, and whether it is a map key."""
    if isinstance(value, str):
        yield path, value, False
    elif isinstance(value, Mapping):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                yield inner, key, True
            yield from text_leaves(item, inner)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from text_leaves(item, f"{path}[{index}]")


# --- the rules of a profile document, on the raw document ----------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _declared(spec: Mapping[str, Any]) -> tuple[set[str], list[FieldError]]:
    """The declared parameter names, and the errors of the declarations."""
    names: set[str] = set()
    errors: list[FieldError] = []
    parameters = spec.get("parameters")
    for index, parameter in enumerate(parameters if isinstance(parameters, list) else []):
        parameter = _mapping(parameter)
        name = parameter.get("name")
        path = f"spec.parameters[{index}]"
        if isinstance(name, str) and _PARAMETER_NAME.fullmatch(name):
            if name in names:
                errors.append(FieldError(f"{path}.name", f"duplicate parameter {quote(name)}"))
            names.add(name)
        if parameter.get("required") is True and parameter.get("default") is not None:
            why = "a required parameter has no default (the run must give its value)"
            errors.append(FieldError(f"{path}.default", why))
    return names, errors


def _identity_errors(cell: Mapping[str, Any]) -> list[FieldError]:
    why = "is given by the run's target and name, not by the profile: leave it out"
    errors = [
        FieldError(f"spec.cell.{field}", why)
        for field in CELL_IDENTITY_FIELDS
        if cell.get(field) not in (None, "")
    ]
    containers = cell.get("containers")
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        container = _mapping(container)
        errors.extend(
            FieldError(f"spec.cell.containers[{index}].{field}", "is derived from the cell's")
            for field in CONTAINER_IDENTITY_FIELDS
            if container.get(field) not in (None, "")
        )
    return errors


def _reference_errors(cell: Mapping[str, Any], declared: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    for path, text, is_key in text_leaves(cell, "spec.cell"):
        for name in references(text):
            if is_key:
                why = "a parameter is substituted into values, not into keys"
            elif name is None:
                why = "`${` is not closed (write `$${` for a literal `${`)"
            elif name not in declared:
                why = (
                    f"refers to {quote('${' + name + '}')}, which spec.parameters does not "
                    "declare (write `$${` for a literal `${`)"
                )
            else:
                continue
            errors.append(FieldError(path, why))
            break
    return errors


def template_errors(doc: Mapping[str, Any]) -> list[FieldError]:
    """The rules of a CellProfile beyond its fields' own: unique parameters, no identity in
    the template, every `${NAME}` declared, and the cell's own cross-field rules."""
    spec = _mapping(doc.get("spec"))
    declared, errors = _declared(spec)
    cell = spec.get("cell")
    if not isinstance(cell, Mapping):
        return errors
    errors += _identity_errors(cell)
    errors += _reference_errors(cell, declared)
    as_cell = {"metadata": {"name": _mapping(doc.get("metadata")).get("name")}, "spec": cell}
    explained = {error.field for error in errors}
    for error in cross_field_errors(Kind.CELL, as_cell):
        field = "spec.cell" + error.field.removeprefix("spec")
        if error.field.startswith("spec.") and field not in explained:
            errors.append(FieldError(field, error.message))
    return errors
