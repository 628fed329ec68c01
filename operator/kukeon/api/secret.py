"""The Secret: named values of a realm, space or stack, encrypted at rest, never served back.

Shaped as Kubernetes' Secret: `data` (base64 values) and/or `stringData` (plain text,
merged into `data` on write, `stringData` winning on a shared key), at the top level of
the document. The scope is in the metadata: `metadata.realm` always, `metadata.space`
and `metadata.stack` to narrow it (a stack needs its space). A container's `secretRef`
is looked up in its stack, then its space, then its realm.

The values exist only in memory, inside kukeond: the registry seals them into the stored
document (see `kukeon.store.encryption`) and opens them again for the controllers. Both
value fields are excluded from every serialisation of the model, so no response, watch
event, log line or manifest dump can carry them; what is shown instead is
`status.keys`: each key's name, size and sha256 digest, computed by the registry (the
digest is left out of a viewer's answers: `kukeon.apiserver.secretdigests`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from kukeon.api.meta import (
    DnsLabel,
    Int,
    Kind,
    KukeonModel,
    NullableList,
    ObjectMeta,
    Resource,
)
from kukeon.api.names import SCOPE_PLACEHOLDER as SCOPE_PLACEHOLDER

MAX_SECRET_BYTES = 1024 * 1024
"""The most a Secret's values may add up to (as in Kubernetes)."""
MAX_KEY_LENGTH = 253

_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def check_secret_key(value: str) -> str:
    """A Kubernetes secret key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`."""
    if not _SECRET_KEY.fullmatch(value):
        raise ValueError(f"key {value!r} must consist of letters, digits, '-', '_' or '.'")
    if value in (".", ".."):
        raise ValueError(f"key {value!r} is not allowed")
    if len(value) > MAX_KEY_LENGTH:
        raise ValueError(f"key {value[:20]!r}... is longer than {MAX_KEY_LENGTH} characters")
    return value


SecretKeyName = Annotated[
    str,
    AfterValidator(check_secret_key),
    Field(json_schema_extra={"pattern": "^[-._a-zA-Z0-9]+$", "maxLength": MAX_KEY_LENGTH}),
]


def _optional_label(value: str | None) -> str | None:
    return None if value == "" else value


class SecretMeta(ObjectMeta):
    """A Secret's metadata: its scope (`realm`, optionally `space`, then `stack`) and name."""

    realm: DnsLabel
    """The realm holding the Secret (required)."""
    space: DnsLabel | None = None
    """Narrows the Secret to one space of the realm."""
    stack: DnsLabel | None = None
    """Narrows the Secret to one stack of the space (requires `space`)."""

    @field_validator("space", "stack", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return _optional_label(value)

    @field_validator("stack")
    @classmethod
    def _stack_needs_space(cls, stack: str | None, info: ValidationInfo) -> str | None:
        if stack is not None and info.data.get("space") is None and "space" in info.data:
            raise ValueError("requires metadata.space (a stack is named within its space)")
        return stack

    def scope(self) -> tuple[str, str, str]:
        """(realm, space or "-", stack or "-"): the Secret's place in etcd and in URLs."""
        return (
            self.realm,
            self.space or SCOPE_PLACEHOLDER,
            self.stack or SCOPE_PLACEHOLDER,
        )


class SecretKeyRef(KukeonModel):
    """One value of a Secret: the Secret's name (looked up stack, space, realm) and its key."""

    name: DnsLabel
    key: SecretKeyName


class SecretKeyStatus(KukeonModel):
    """What may be shown of one value: its key, size and digest."""

    name: str
    size: Int = Field(ge=0)
    """Bytes of the value."""
    sha256: str | None = None
    """Hex sha256 of the value (compare with `sha256sum FILE`; a guessable value can be
    found from it, as from any unsalted digest: secrets should be random). Not shown to
    viewers, who cannot use the values."""


class SecretStatus(KukeonModel):
    """Written by the registry at every write of the values, never by clients."""

    keys: NullableList[SecretKeyStatus] = Field(default_factory=list)


class SecretSpec(KukeonModel):
    """Empty: a Secret's body is `data`/`stringData`; kept for the envelope's sake."""


def _decoded(data: dict[str, str] | None) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (data or {}).items()}


def key_status(values: dict[str, bytes]) -> SecretStatus:
    """The status describing ``values`` (sorted by key)."""
    return SecretStatus(
        keys=[
            SecretKeyStatus(name=key, size=len(value), sha256=hashlib.sha256(value).hexdigest())
            for key, value in sorted(values.items())
        ]
    )


class Secret(Resource[SecretSpec, SecretStatus]):
    """A Secret. `data`/`stringData` are write-only: never serialised, only `status.keys`."""

    kind: Literal[Kind.SECRET] = Kind.SECRET
    metadata: SecretMeta
    spec: SecretSpec = Field(default_factory=SecretSpec, exclude=True)
    type: Literal["Opaque"] = "Opaque"
    """Opaque (arbitrary data), the only type kukeon knows."""
    data: dict[SecretKeyName, str] | None = Field(default=None, exclude=True)
    """Values, base64-encoded. Unset on an update keeps the stored values; `{}` empties."""
    string_data: dict[SecretKeyName, str] | None = Field(default=None, exclude=True)
    """Values as plain text, merged into `data` on write (winning on a shared key)."""
    status: SecretStatus = Field(default_factory=SecretStatus)

    @field_validator("data")
    @classmethod
    def _base64_values(cls, data: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (data or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"the value of {key!r} is not valid base64") from None
        return data

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        values = self.values()
        if values is not None:
            total = sum(len(value) for value in values.values())
            if total > MAX_SECRET_BYTES:
                raise ValueError(
                    f"the values add up to {total} bytes, over the {MAX_SECRET_BYTES}-byte limit"
                )
        return self

    def values(self) -> dict[str, bytes] | None:
        """Every value as bytes (stringData merged over data); None when neither is given."""
        if self.data is None and self.string_data is None:
            return None
        merged = _decoded(self.data)
        merged.update({key: value.encode() for key, value in (self.string_data or {}).items()})
        return merged

    def value(self, key: str) -> bytes | None:
        """One value, when this model carries the values (inside kukeond) and has ``key``."""
        values = self.values()
        return None if values is None else values.get(key)


def secret_scope(realm: str, space: str | None = None, stack: str | None = None) -> tuple[str, ...]:
    """The key prefix of a Secret scope: `(realm, space|"-", stack|"-")`."""
    return (realm, space or SCOPE_PLACEHOLDER, stack or SCOPE_PLACEHOLDER)


def lookup_scopes(realm: str, space: str, stack: str) -> list[tuple[str, str, str]]:
    """Where a cell of ``realm/space/stack`` looks a Secret up: its stack, space, realm."""
    return [
        (realm, space, stack),
        (realm, space, SCOPE_PLACEHOLDER),
        (realm, SCOPE_PLACEHOLDER, SCOPE_PLACEHOLDER),
    ]
