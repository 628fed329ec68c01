"""What every kind shares: the API group and version, the base model, metadata, field types.

kukeon's external shape is camelCase JSON/YAML (`readOnlyRootFilesystem`), Python code is
snake_case (`read_only_root_filesystem`): one base model carries the alias generator, so
every kind speaks both and serialises camelCase. Unknown fields are rejected everywhere,
because a typo in a manifest (`imagePullPolcy`) must be an error, not a silently dropped line.

The reusable field types below (DNS labels, absolute paths, lists that tolerate the `null`
Go writes for an empty slice) carry their rule with them, so a model states a rule by
naming a type and the error lands on the exact field path.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

# The API's names (pydantic-free, for clients), exported here with the models as before.
from kukeon.api.names import API_VERSION as API_VERSION
from kukeon.api.names import DEFAULT_PARENT as DEFAULT_PARENT
from kukeon.api.names import GROUP as GROUP
from kukeon.api.names import LEGACY_API_VERSION as LEGACY_API_VERSION
from kukeon.api.names import SCOPED_KINDS as SCOPED_KINDS
from kukeon.api.names import VERSION as VERSION
from kukeon.api.names import Kind as Kind
from kukeon.api.observed import tolerant_enum
from kukeon.api.yamlwords import YamlBoolWord

# --- bounds every field shares -----------------------------------------------------------

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""Every integer of a document fits a signed 64-bit integer (etcd, Go and the OCI spec use it)."""

QUOTE_LIMIT = 200
"""At most this many characters of a user's value are quoted back in an error message."""

# NUL cannot cross a C string (argv, env, paths); a lone surrogate cannot be encoded as
# UTF-8, so it could never be written to etcd. Both are refused wherever text is accepted.
_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")


_JSON_WORDS = {True: "true", False: "false", None: "null"}


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a user's value, cut to ``limit`` characters (a 1 MB name is not echoed);
    ``true``, ``false`` and ``null`` as JSON and YAML spell them (not Python's ``True``)."""
    if value is None or isinstance(value, bool):
        return _JSON_WORDS[value]
    if isinstance(value, int) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    cut = repr(text[:limit]) if isinstance(value, str) else text[:limit]
    return f"{cut}... ({len(text)} characters)"


def storable_text(text: str) -> str:
    """``text`` with each NUL and lone surrogate written as its escape (``\\x00``,
    ``\\udc80``): a message kukeon makes from what a runtime or an image said (an error's
    text quoting a file name or a value) is stored, where the raw one would be refused."""
    if _UNENCODABLE.search(text) is None:
        return text
    return _UNENCODABLE.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    match = _UNENCODABLE.search(value)
    if match is None:
        return None
    if match.group() == "\x00":
        return f"must not contain a NUL character (at offset {match.start()})"
    return f"must not contain a lone surrogate (at offset {match.start()}): it is not UTF-8"


def _nested_text_problem(value: Any) -> str | None:
    """Why a text anywhere in ``value`` (a string, or lists and maps of any depth) cannot be
    stored, and where; None when every text can. A free-form field (a CellSet revision's
    template) holds maps in maps: a lone surrogate deep in one failed the write to etcd."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (problem := _nested_text_problem(item)) is not None:
                return f"item {index}: {problem}"
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key)) is not None:
                return f"key {quote(key)}: {problem}"
            if (problem := _nested_text_problem(item)) is not None:
                return f"value of {quote(key)}: {problem}"
    return None


def _check_text(value: Any) -> Any:
    if (problem := _nested_text_problem(value)) is not None:
        raise ValueError(problem)
    return value


class KukeonModel(BaseModel):
    """Base of every model: camelCase aliases, Python names accepted too, unknown fields refused.

    Every text field, list of texts and map of texts refuses NUL and lone surrogates, so
    such a value is a 422 naming its field instead of a crash when it is encoded or exec'd.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        # Field docstrings become descriptions in the generated CRD schemas, read from the
        # source only when a schema is made (kukeon.api.schema), not at every import.
        # Validators and serializers are built on a model's first use, not at import: a
        # kukectl run pays only for the models it touches (most pay for none), kukeond the
        # same cost once, at its first document.
        defer_build=True,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _encodable_text(cls, value: Any) -> Any:
        return _check_text(value)


# --- reusable field types ---------------------------------------------------------------

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_LABEL_MAX = 63
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def check_dns_label(value: str) -> str:
    """A DNS-1123 label: what every name and id in the hierarchy must be."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > DNS_LABEL_MAX:
        raise ValueError(f"must be at most {DNS_LABEL_MAX} characters, got {len(value)}")
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{quote(value)} is not a DNS-1123 label (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return value


DNS_SUBDOMAIN_MAX = 253
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN_PATTERN[1:-1])


def check_dns_subdomain(value: str) -> str:
    """A DNS-1123 subdomain: dot-separated labels, at most 253 characters (a host's name)."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > DNS_SUBDOMAIN_MAX:
        raise ValueError(f"must be at most {DNS_SUBDOMAIN_MAX} characters, got {len(value)}")
    if not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f"{quote(value)} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and "
            "'.', each dot-separated part starting and ending with a letter or digit)"
        )
    return value


FILE_NAME_MAX = 253
FILE_NAME_PATTERN = r"^[-._a-zA-Z0-9]+$"
_FILE_NAME = re.compile(FILE_NAME_PATTERN[1:-1])


def check_file_name(value: str) -> str:
    """A name that becomes one file name on the host: letters, digits, '-', '_' and '.',
    never '.' or '..', at most 253 characters (Kubernetes' rule for Secret keys)."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > FILE_NAME_MAX:
        raise ValueError(f"must be at most {FILE_NAME_MAX} characters, got {len(value)}")
    if value in (".", ".."):
        raise ValueError(f"must not be {value!r}")
    if not _FILE_NAME.fullmatch(value):
        raise ValueError(
            f"{quote(value)} may contain only letters, digits, '-', '_' and '.' "
            "(it becomes a file name)"
        )
    return value


def check_absolute_path(value: str) -> str:
    """Mount points and host paths are resolved against nothing, so they must be absolute."""
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, got {quote(value)}")
    return value


def check_mount_path(value: str) -> str:
    """A mount point: absolute, with no '..' component (as Kubernetes requires)."""
    check_absolute_path(value)
    if ".." in value.split("/"):
        raise ValueError(f"must not contain a '..' component, got {quote(value)}")
    return value


def _none_as_empty_list(value: Any) -> Any:
    # Go marshals a nil slice as `null`; kukeon's own output is full of `args: null`.
    return [] if value is None else value


def _none_as_empty_dict(value: Any) -> Any:
    return {} if value is None else value


def _empty_string_as_none(value: Any) -> Any:
    # Go writes an unset string as "", which means "not set" in every kukeon field.
    return None if value == "" else value


def _zero_time_as_none(value: Any) -> Any:
    # Go's zero time.Time ("0001-01-01T00:00:00Z") is kukeon's "never happened".
    if isinstance(value, int | float):  # pydantic reads a number as Unix time; JSON has text
        raise ValueError(
            f"must be an RFC 3339 timestamp as text (2026-01-01T00:00:00Z), got {quote(value)}"
        )
    if isinstance(value, str) and value.startswith("0001-01-01"):
        return None
    if isinstance(value, datetime) and value.year == 1:
        return None
    return value


def _aware(value: datetime | None) -> datetime | None:
    # A naive timestamp is taken as UTC so documents compare and serialise one way.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


_DNS_SCHEMA = {"pattern": DNS_LABEL_PATTERN, "maxLength": DNS_LABEL_MAX}

DnsLabel = Annotated[str, AfterValidator(check_dns_label), Field(json_schema_extra=_DNS_SCHEMA)]
AbsolutePath = Annotated[
    str, AfterValidator(check_absolute_path), Field(json_schema_extra={"pattern": "^/"})
]
DnsSubdomain = Annotated[
    str,
    AfterValidator(check_dns_subdomain),
    Field(json_schema_extra={"pattern": DNS_SUBDOMAIN_PATTERN, "maxLength": DNS_SUBDOMAIN_MAX}),
]
FileName = Annotated[
    str,
    AfterValidator(check_file_name),
    Field(json_schema_extra={"pattern": FILE_NAME_PATTERN, "maxLength": FILE_NAME_MAX}),
]
MountPath = Annotated[
    str, AfterValidator(check_mount_path), Field(json_schema_extra={"pattern": "^/"})
]
T = TypeVar("T")
NullableList = Annotated[list[T], BeforeValidator(_none_as_empty_list)]
StringMap = Annotated[dict[str, str], BeforeValidator(_none_as_empty_dict)]
OptionalString = Annotated[str | None, BeforeValidator(_empty_string_as_none)]
Timestamp = Annotated[datetime | None, BeforeValidator(_zero_time_as_none), AfterValidator(_aware)]


# --- booleans and integers: JSON's types, as Kubernetes decodes them --------------------
#
# pydantic's lax mode took "yes", "true", "1", "off" and 1 for a boolean, "5" and true for
# an integer, where kube-apiserver answers "cannot unmarshal string into Go value of type
# bool". Every boolean and integer field of a model is one of these two types instead.


def _json_boolean(value: Any) -> Any:
    # A plain YAML `yes`/`no`/`on`/`off` (YAML 1.1's booleans, read as text: yamlread) is
    # the boolean kubectl's YAML reader makes of it; the same word quoted stays refused.
    return value.boolean if isinstance(value, YamlBoolWord) else value


Bool = Annotated[bool, BeforeValidator(_json_boolean), Strict()]
"""A JSON boolean (or a plain YAML 1.1 boolean word); text and numbers are refused."""

Int = Annotated[int, Strict()]
"""A JSON integer; text, booleans and any number written with a fraction (5.5, 5.0: Go's
JSON decoder refuses it for an int64 too) are refused."""


# --- metadata and the resource envelope -------------------------------------------------


class ObjectMeta(KukeonModel):
    """Identity and bookkeeping of a stored document.

    `name` is the user's; `uid`, `resourceVersion`, `generation`, the timestamps and
    `finalizers` are written by the store (the etcd mod_revision is the resourceVersion).
    """

    name: DnsLabel
    labels: StringMap = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)
    uid: OptionalString = None
    generation: Int = Field(default=0, ge=0, le=INT64_MAX)
    resource_version: OptionalString = None
    """The etcd mod_revision of the stored document; writes compare-and-swap on it."""
    creation_timestamp: Timestamp = None
    deletion_timestamp: Timestamp = None
    deletion_grace_period_seconds: Int | None = Field(default=None, ge=0, le=INT64_MAX)
    """A cell's stop grace for its deletion, when the delete gave one (kubectl's
    `--grace-period`); a later delete may only shorten it. Written by the registry."""
    finalizers: NullableList[str] = Field(default_factory=list)


class StatusBase(KukeonModel):
    """The status fields every kind reports; each kind adds its `state` and extras."""

    reason: OptionalString = None
    message: OptionalString = None
    cgroup_path: OptionalString = None
    subtree_controllers: NullableList[str] = Field(default_factory=list)
    cgroup_ready: Bool = False
    observed_generation: Int = Field(default=0, ge=0, le=INT64_MAX)
    node_name: OptionalString = None
    """The node whose kukeond observed and wrote this status."""
    created_at: Timestamp = None
    updated_at: Timestamp = None
    ready_at: Timestamp = None


class NodeLayerState(StrEnum):
    """What one node did with a realm, space or stack (its entry in `status.nodes`)."""

    CREATING = "Creating"
    READY = "Ready"
    DELETING = "Deleting"
    FAILED = "Failed"


NodeLayerStateField = Annotated[NodeLayerState, tolerant_enum(NodeLayerState)]


class NodeLayerStatus(KukeonModel):
    """One node's materialisation of a realm, space or stack, written only by that node."""

    state: NodeLayerStateField = NodeLayerState.CREATING
    reason: OptionalString = None
    message: OptionalString = None
    cgroup_path: OptionalString = None
    subtree_controllers: NullableList[str] = Field(default_factory=list)
    observed_generation: Int = Field(default=0, ge=0, le=INT64_MAX)
    updated_at: Timestamp = None
    ready_at: Timestamp = None


SpecT = TypeVar("SpecT", bound=KukeonModel)
StatusT = TypeVar("StatusT", bound=KukeonModel)


def _normalise_api_version(value: str) -> str:
    if value not in (API_VERSION, LEGACY_API_VERSION):
        raise ValueError(f"unsupported apiVersion {quote(value)}, expected {API_VERSION}")
    return API_VERSION


ApiVersion = Annotated[str, AfterValidator(_normalise_api_version)]


class Resource(KukeonModel, Generic[SpecT, StatusT]):
    """The document envelope: `apiVersion`, `kind`, `metadata`, `spec`, `status`.

    `spec` and `status` are always present (a manifest may omit both), so callers never
    test for None; a manifest's `status` is accepted and kept, the controllers own it.
    """

    # Stack and Cell repeat their name as `spec.id` (kukeon's historical duplication).
    has_spec_id: ClassVar[bool] = False

    api_version: ApiVersion = API_VERSION
    kind: Kind
    metadata: ObjectMeta
    spec: SpecT
    status: StatusT

    @model_validator(mode="before")
    @classmethod
    def _fill_envelope(cls, data: Any) -> Any:
        """Treat a missing or null `spec`/`status` as empty; take a missing name from `spec.id`."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("spec", "status"):
            if key in data and data[key] is None:
                del data[key]
        data.setdefault("spec", {})
        if cls.has_spec_id:
            spec_id = _spec_id(data["spec"])
            metadata = data.get("metadata")
            if metadata is None:
                metadata = {}
            if isinstance(metadata, dict) and not metadata.get("name") and spec_id:
                data["metadata"] = {**metadata, "name": spec_id}
        return data

    @model_validator(mode="after")
    def _fill_spec_id(self) -> Self:
        if self.has_spec_id and getattr(self.spec, "id", "") is None:
            self.spec = self.spec.model_copy(update={"id": self.metadata.name})
        return self


def _spec_id(spec: Any) -> str | None:
    value = spec.get("id") if isinstance(spec, dict) else getattr(spec, "id", None)
    return value if isinstance(value, str) and value else None
