"""Status values this version does not know: kept as written, never a reason to drop a
document.

A newer kukeond adds values to status enums (a container's `state: Waiting` was one): an
older node, kukectl or API server reading such a document must neither take the whole
object for invalid (``store.decoding`` skips invalid documents, so a cell would look
deleted) nor replace the value with a guess of its own when it writes the status back
(realm, space and stack statuses hold every node's entry; any of them rewrites all).
So a status enum field takes any enum-like word (``Hibernating``, ``Evicted``): a known
one is the enum's member, an unknown one an *unknown member* (:func:`unknown_member`)
that is equal to, serialised as, and printed as the word, and matches no member in code
(``state == CellState.READY`` is False, a ``for`` over the enum never yields it), so code
written for the known values treats it as none of them. Spec enums are not tolerant: a
spec value this version does not know is a request it cannot carry out, refused (422).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import (
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

E = TypeVar("E", bound=StrEnum)

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
"""What an unknown status value may be: a word as enum values are (63 characters at
most), so garbage (empty, multi-line, huge) is still refused."""


def unknown_member(enum: type[E], value: str) -> E:
    """A member of ``enum`` standing for ``value``, which it does not declare: equal to
    the string, serialised as it, not one of ``enum``'s members (the way the standard
    library's Flag makes pseudo-members for combinations)."""
    member = str.__new__(enum, value)
    member._name_ = value
    member._value_ = value
    return member


OPEN_ENUM = "x-kukeon-known-values"
"""Where a tolerant field's JSON schema lists the values this version knows; the CRD
generator (``api.schema``) turns it into words of the description, since a structural
schema has no such key."""


@dataclass(frozen=True)
class _Tolerant:
    """A status enum (or ``Literal``) that keeps an unknown word: validation, and a JSON
    schema that says so (a string of ``_WORD``'s shape, the known values listed aside)
    instead of the closed ``enum`` of the type it wraps, which a CRD or ``kukectl explain``
    would then show as the only values a stored status may hold."""

    unknown: Callable[[str], Any]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        unknown = self.unknown

        def validate(value: Any, inner: ValidatorFunctionWrapHandler) -> Any:
            try:
                return inner(value)
            except ValidationError:
                if isinstance(value, str) and _WORD.fullmatch(value):
                    return unknown(value)
                raise

        return core_schema.no_info_wrap_validator_function(validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        known = handler.resolve_ref_schema(handler(schema)).get("enum", [])
        return {"type": "string", "pattern": f"^{_WORD.pattern}$", OPEN_ENUM: list(known)}


def tolerant_enum(enum: type[StrEnum]) -> _Tolerant:
    """For an ``Annotated`` status enum field: an unknown word is kept as an unknown member."""
    return _Tolerant(lambda value: unknown_member(enum, value))


def tolerant_word() -> _Tolerant:
    """For an ``Annotated`` status ``Literal`` field: an unknown word is kept as it is."""
    return _Tolerant(lambda value: value)
