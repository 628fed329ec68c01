"""The CellSet: `replicas` copies of one cell template in a stack, rolled on change.

A set lives in a stack as a cell does (`spec.realmId`, `spaceId`, `stackId`). Its
`spec.template` is a cell's spec without its identity (`CellTemplate`, as a CellProfile's)
plus the labels every cell of the set carries; `spec.selector.matchLabels` must match
those labels. The set controller (`kukeon.controllers.cellsets`) owns cells named
`<set>-<template hash>-<5 chars>`, labelled `kukeon.io/cellset=<set>` and
`kukeon.io/template-hash=<hash>`; `template_hash` is the one definition of that hash.

`spec.strategy` is `RollingUpdate` (`maxSurge`, `maxUnavailable`: a count or a percentage
of `replicas`, as Kubernetes resolves them: surge rounded up, unavailability down) or
`Recreate` (every old cell removed before a new one is made).

`spec.spread` is a rule the scheduler keeps when it places each cell of the set
(`kukeon.api.spread`): at most ⌈replicas/domains⌉ of the set's cells per node, or per
value of the node label `spread.topologyKey`. It is not part of the template hash.

Instead of writing `spec.template.spec`, a set may name a CellProfile (`spec.profile`, with
values for its parameters in `spec.params`): the API server resolves it at the write, as
`kukectl run --profile` does, and stores the resulting cell spec as `spec.template.spec`
(`kukeon.apiserver.cellsetprofiles`), so whatever reads a set finds its template there.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, WithJsonSchema

from kukeon.api.cellprofile import CELL_IDENTITY_FIELDS, CONTAINER_IDENTITY_FIELDS, CellTemplate
from kukeon.api.container import OptionalDnsLabel
from kukeon.api.labelrules import LABEL_KEY_MAX, LABEL_KEY_PATTERN, label_key_problem
from kukeon.api.meta import (
    API_VERSION,
    DEFAULT_PARENT,
    DNS_LABEL_MAX,
    DnsLabel,
    Int,
    Kind,
    KukeonModel,
    NullableList,
    OptionalString,
    Resource,
    StringMap,
    Timestamp,
    quote,
)
from kukeon.api.observed import tolerant_word
from kukeon.api.validation import FieldError, cross_field_errors

CELLSET_LABEL = "kukeon.io/cellset"
"""The label of every cell a set owns: the set's name."""
TEMPLATE_HASH_LABEL = "kukeon.io/template-hash"
"""The label of every cell a set owns: the hash of the template it was made from."""
ORPHAN_FINALIZER = "kukeon.io/orphan"
"""Put by ``DELETE ?propagationPolicy=Orphan``: the set goes, its cells stay (unowned)."""
CHANGE_CAUSE_ANNOTATION = "kukeon.io/change-cause"
"""A set's annotation, recorded with the revision of its template (`rollout history`)."""
REVISION_HISTORY_MAX = 100
HASH_LENGTH = 8
SUFFIX_LENGTH = 5
NAME_MAX = DNS_LABEL_MAX - HASH_LENGTH - SUFFIX_LENGTH - 2
"""A set's name leaves room for `-<hash>-<suffix>` in its cells' names."""
REPLICAS_MAX = 10_000
DEADLINE_MAX = 86_400 * 7
DEFAULT_PROGRESS_DEADLINE = 600
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
"""The reason of `Progressing=False`: the rollout stopped, waiting for a new template."""

_PERCENT = re.compile(r"[0-9]{1,3}%")


def _int_or_percent(value: Any) -> int | str:
    """One check, one message: a union of an int and a pattern said each branch's refusal
    under pydantic's names for them (`maxSurge.constrained-int`, `...constrained-str`)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= REPLICAS_MAX:
        return value
    if isinstance(value, str) and _PERCENT.fullmatch(value):
        return value
    raise ValueError(
        f"must be a count from 0 to {REPLICAS_MAX} or a percentage of replicas "
        f"(1 to 3 digits and '%', e.g. 1 or '25%'), got {quote(value)}"
    )


IntOrPercent = Annotated[
    int | str,
    PlainValidator(_int_or_percent),
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
"""A count, or a percentage of `replicas` (`"25%"`)."""


class StrategyType(StrEnum):
    ROLLING_UPDATE = "RollingUpdate"
    RECREATE = "Recreate"


class RollingUpdate(KukeonModel):
    max_surge: IntOrPercent = "25%"
    """How many cells beyond `replicas` may exist during a rollout (rounded up)."""
    max_unavailable: IntOrPercent = "25%"
    """How many of `replicas` may be unavailable during a rollout (rounded down)."""


class CellSetStrategy(KukeonModel):
    type: StrategyType = StrategyType.ROLLING_UPDATE
    """RollingUpdate (new cells replace old ones a few at a time) or Recreate (every old
    cell goes before the new ones come)."""
    rolling_update: RollingUpdate | None = None
    """Only with `RollingUpdate` (unset: 25% and 25%)."""


class LabelSelector(KukeonModel):
    match_labels: StringMap = Field(default_factory=dict)
    """The labels that make a cell the set's (required, non-empty, in the template's)."""


def _empty_map_as_none(value: Any) -> Any:
    # Unset and {} are one template: the hash (and so the cells) must not tell them apart.
    return None if value == {} else value


class TemplateMeta(KukeonModel):
    labels: StringMap = Field(default_factory=dict)
    """Every cell of the set carries them (and the set's own two labels)."""
    annotations: Annotated[dict[str, str] | None, BeforeValidator(_empty_map_as_none)] = None
    """Every cell of the set carries them; a change rolls the cells, as any change of the
    template (`kukectl rollout restart` sets `kukeon.io/restartedAt` here)."""


class CellSetTemplate(KukeonModel):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    """The cells' labels and annotations."""
    spec: CellTemplate | None = None
    """The cells' spec. Left out only beside `spec.profile`: the API server then fills it
    with the profile's cell (a stored set always has it)."""


class LostNode(KukeonModel):
    """What becomes of the set's cells on a node that is lost (NotReady)."""

    replace_after_seconds: Int = Field(default=60, ge=0, le=86_400)
    """A cell the scheduler placed on a node NotReady for this long is placed elsewhere
    (at `--node-lost-timeout` at the latest, as any scheduler-placed cell)."""
    stop_on_return: Literal[True] = True
    """A returning node stops the copies placed elsewhere before it reports Ready: always
    (kukeond does so for every cell), so only `true` is accepted."""


def check_label_key(value: str) -> str:
    """A label key as Kubernetes has them (`kukeon.api.labelrules`)."""
    problem = label_key_problem(value)
    if problem is not None:
        raise ValueError(f"{quote(value)} {problem}")
    return value


LabelKey = Annotated[
    str,
    AfterValidator(check_label_key),
    Field(json_schema_extra={"pattern": LABEL_KEY_PATTERN, "maxLength": LABEL_KEY_MAX}),
]


class Spread(KukeonModel):
    """How the set's cells spread over the nodes: a rule the scheduler keeps when it places
    each of them (`kukeon.api.spread`); running cells are not moved when it changes."""

    topology_key: LabelKey | None = None
    """A node label: at most ceil(replicas/domains) cells of the set per value of it among the
    Ready nodes that fit the cells (a node without the label takes none). Unset (the
    default): per node, the domains being the Ready nodes that fit."""


def _spread_object(value: Any) -> Any:
    """`spread:` left empty (null) is the default; anything but an object is refused."""
    if value is None:
        return {}
    if not isinstance(value, Mapping | Spread):
        why = "must be an object: {} (per node, the default) or {topologyKey: <node label>}"
        raise ValueError(f"{why}, got {quote(value)}")
    return value


class CellSetSpec(KukeonModel):
    realm_id: DnsLabel = DEFAULT_PARENT
    """The realm of the set and its cells (`default` when unset)."""
    space_id: DnsLabel = DEFAULT_PARENT
    """The space of the set and its cells (`default` when unset)."""
    stack_id: DnsLabel = DEFAULT_PARENT
    """The stack of the set and its cells (`default` when unset)."""
    replicas: Int = Field(default=1, ge=0, le=REPLICAS_MAX)
    """How many cells the set keeps running (0 to 10000; default 1)."""
    selector: LabelSelector
    """Which cells are the set's."""
    template: CellSetTemplate
    """The cell every replica is made from; a change rolls out (see `strategy`)."""
    profile: OptionalDnsLabel = None
    """A CellProfile (of the set's stack, else space, else realm) whose cell is the
    template's spec, resolved by the API server at the writes that leave
    `spec.template.spec` out or change `profile` or `params`."""
    params: StringMap = Field(default_factory=dict)
    """Values of the profile's parameters, by name (only with `profile`)."""
    strategy: CellSetStrategy = Field(default_factory=CellSetStrategy)
    lost_node: LostNode = Field(default_factory=LostNode)
    spread: Annotated[Spread, BeforeValidator(_spread_object)] = Field(default_factory=Spread)
    """A rule the scheduler keeps when it places each cell of the set: `{}` (the default)
    at most ceil(replicas/nodes) per node, `{topologyKey: <node label>}` per value of it
    (docs/cellsets.md, Spread). Not part of the template hash: a change moves no cell."""
    node_selector: StringMap = Field(default_factory=dict)
    """Labels a node must carry to run a cell of the set: added to every cell's
    `nodeSelector` (with the template's own; a key in both must have the same value)."""
    min_ready_seconds: Int = Field(default=0, ge=0, le=86_400)
    """How long a new cell must have been Ready before it counts as available."""
    revision_history_limit: Int = Field(default=10, ge=0, le=REVISION_HISTORY_MAX)
    """How many earlier templates the status keeps for `rollout history` and `undo`."""
    progress_deadline_seconds: Int = Field(default=DEFAULT_PROGRESS_DEADLINE, ge=1, le=DEADLINE_MAX)
    """A rollout that makes no progress for this long stops (`Progressing=False`)."""

    def surge_and_unavailable(self) -> tuple[int, int]:
        """`maxSurge` and `maxUnavailable` as counts (at least one of them positive)."""
        rolling = self.strategy.rolling_update or RollingUpdate()
        surge = resolve(rolling.max_surge, self.replicas, round_up=True)
        unavailable = resolve(rolling.max_unavailable, self.replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable


class CellSetCondition(KukeonModel):
    type: Annotated[Literal["Available", "Progressing", "ReplicaFailure"], tolerant_word()]
    """`ReplicaFailure` (only while it holds, as Kubernetes' ReplicaSet's): a cell could
    not be created, e.g. over the realm's quota; its message says why."""
    status: Annotated[Literal["True", "False"], tolerant_word()]
    reason: OptionalString = None
    message: OptionalString = None
    last_transition_time: Timestamp = None
    last_update_time: Timestamp = None
    """`Progressing`: when the set last made progress (its deadline counts from there)."""


TemplateDocument = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""A template as it was written (`rollout undo` writes it back, through admission)."""


class CellSetRevision(KukeonModel):
    """One template the set has run: its number (rising; an undo renumbers it)."""

    revision: Int = Field(ge=1)
    template_hash: str
    change_cause: OptionalString = None
    """The set's `kukeon.io/change-cause` annotation when the template was first seen."""
    template: TemplateDocument


class CellSetStatus(KukeonModel):
    replicas: Int = 0
    """Cells of the set (not being deleted)."""
    ready_replicas: Int = 0
    updated_replicas: Int = 0
    """Cells made from the current template."""
    available_replicas: Int = 0
    """Ready cells, the new ones Ready for `minReadySeconds`."""
    observed_generation: Int = 0
    template_hash: OptionalString = None
    conditions: NullableList[CellSetCondition] = Field(default_factory=list)
    revisions: NullableList[CellSetRevision] = Field(default_factory=list)
    """The current template last, and up to `revisionHistoryLimit` earlier ones."""


class CellSet(Resource[CellSetSpec, CellSetStatus]):
    kind: Literal[Kind.CELL_SET] = Kind.CELL_SET
    spec: CellSetSpec
    status: CellSetStatus = Field(default_factory=CellSetStatus)

    def template_hash(self) -> str:
        """The hash of what the cells are made from: the template and the set's
        `nodeSelector` (so a change of either rolls the cells)."""
        return template_hash(self.spec.template, self.spec.node_selector)

    def template_document(self) -> dict[str, Any]:
        """The template as a revision keeps it."""
        return self.spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)

    def cell_document(self, name: str, hash_: str) -> dict[str, Any]:
        """The Cell document of the set's cell ``name``: the template with the set's
        identity and labels (parsed by the caller as any cell document)."""
        template = self.spec.template.spec
        if template is None:
            raise ValueError(f"cellset {self.metadata.name}: its profile was never resolved")
        spec = template.model_dump(mode="json", by_alias=True, exclude_none=True)
        spec.update(realmId=self.spec.realm_id, spaceId=self.spec.space_id)
        if self.spec.node_selector:
            spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **self.spec.node_selector}
        spec["stackId"] = self.spec.stack_id
        return {
            "apiVersion": API_VERSION,
            "kind": Kind.CELL.value,
            "metadata": {
                "name": name,
                "labels": self.cell_labels(hash_),
                "annotations": dict(self.spec.template.metadata.annotations or {}),
            },
            "spec": spec,
        }

    def cell_labels(self, hash_: str) -> dict[str, str]:
        return {
            **self.spec.template.metadata.labels,
            CELLSET_LABEL: self.metadata.name,
            TEMPLATE_HASH_LABEL: hash_,
        }


def resolve(value: int | str, replicas: int, *, round_up: bool) -> int:
    """A count or a percentage of ``replicas`` as a count."""
    if isinstance(value, int):
        return value
    share = int(value.removesuffix("%")) * replicas / 100
    return math.ceil(share) if round_up else math.floor(share)


def template_hash(template: CellSetTemplate, node_selector: Mapping[str, str] | None = None) -> str:
    """The first 8 hex digits of the SHA-256 of the template's canonical JSON (with the
    set's `nodeSelector` when it has one)."""
    document: dict[str, Any] = template.model_dump(mode="json", by_alias=True, exclude_none=True)
    if node_selector:
        document = {**document, "setNodeSelector": dict(node_selector)}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


# --- the rules of a set document beyond its fields' own ---------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _identity_errors(cell: Mapping[str, Any]) -> list[FieldError]:
    errors = [
        FieldError(f"spec.template.spec.{field}", "is given by the set: leave it out")
        for field in CELL_IDENTITY_FIELDS
        if cell.get(field) not in (None, "")
    ]
    containers = cell.get("containers")
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        errors.extend(
            FieldError(
                f"spec.template.spec.containers[{index}].{field}", "is derived from the cell's"
            )
            for field in CONTAINER_IDENTITY_FIELDS
            if _mapping(container).get(field) not in (None, "")
        )
    return errors


def _selector_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    selector = _mapping(_mapping(spec.get("selector")).get("matchLabels"))
    labels = _mapping(_mapping(_mapping(spec.get("template")).get("metadata")).get("labels"))
    if "selector" in spec and not selector:
        return [FieldError("spec.selector.matchLabels", "at least one label is required")]
    for key, value in selector.items():
        if labels.get(key) != value:
            why = f"does not match spec.template.metadata.labels (needs {key}={value})"
            return [FieldError("spec.selector.matchLabels", why)]
    return []


def _strategy_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    strategy = _mapping(spec.get("strategy"))
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == StrategyType.RECREATE and rolling is not None:
        return [FieldError("spec.strategy.rollingUpdate", "only with type RollingUpdate")]
    rolling = _mapping(rolling)
    if rolling.get("maxSurge") in (0, "0%") and rolling.get("maxUnavailable") in (0, "0%"):
        why = "may not be 0 when maxSurge is 0 (the rollout could never progress)"
        return [FieldError("spec.strategy.rollingUpdate.maxUnavailable", why)]
    return []


def _node_selector_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    own = _mapping(spec.get("nodeSelector"))
    template = _mapping(_mapping(_mapping(spec.get("template")).get("spec")).get("nodeSelector"))
    return [
        FieldError(f"spec.nodeSelector.{key}", why)
        for key, value in own.items()
        if key in template and template[key] != value
        for why in [f"conflicts with spec.template.spec.nodeSelector ({key}={template[key]})"]
    ]


def _deadline_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    deadline = spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE)
    min_ready = spec.get("minReadySeconds", 0)
    if isinstance(deadline, int) and isinstance(min_ready, int) and deadline <= min_ready:
        why = f"must be greater than spec.minReadySeconds ({min_ready})"
        return [FieldError("spec.progressDeadlineSeconds", why)]
    return []


def _profile_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    """The template's spec comes from the document or from a profile (both: the API
    server's copy of the profile's cell, checked there against the stored set)."""
    errors: list[FieldError] = []
    template = _mapping(spec.get("template"))
    if "template" in spec and template.get("spec") is None and not spec.get("profile"):
        why = "is required, unless spec.profile names a CellProfile to take it from"
        errors.append(FieldError("spec.template.spec", why))
    if spec.get("params") and not spec.get("profile"):
        why = "only with spec.profile (values of the profile's parameters)"
        errors.append(FieldError("spec.params", why))
    return errors


def cellset_errors(doc: Mapping[str, Any]) -> list[FieldError]:
    """A set's name length, selector, strategy, template identity and the cell's own rules."""
    errors: list[FieldError] = []
    name = _mapping(doc.get("metadata")).get("name")
    if isinstance(name, str) and len(name) > NAME_MAX:
        why = f"at most {NAME_MAX} characters (its cells are named <set>-<hash>-<5 chars>)"
        errors.append(FieldError("metadata.name", why))
    spec = _mapping(doc.get("spec"))
    errors += _selector_errors(spec) + _strategy_errors(spec) + _deadline_errors(spec)
    errors += _node_selector_errors(spec) + _profile_errors(spec)
    cell = _mapping(spec.get("template")).get("spec")
    if not isinstance(cell, Mapping):
        return errors
    errors += _identity_errors(cell)
    parents = {field: spec[field] for field in ("realmId", "spaceId", "stackId") if field in spec}
    as_cell = {"metadata": {"name": "x"}, "spec": {**cell, **parents}}
    explained = {error.field for error in errors}
    for error in cross_field_errors(Kind.CELL, as_cell):
        field = "spec.template.spec" + error.field.removeprefix("spec")
        if error.field.startswith("spec.") and field not in explained:
            errors.append(FieldError(field, error.message))
    return errors
