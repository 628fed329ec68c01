"""Field selectors, Kubernetes syntax: ``status.state=Ready,spec.nodeName!=n2``.

As in Kubernetes, each kind supports a few fields, not every one: those a user filters by
(its name, state and reason, a cell's node, a node's cordon). An unsupported field is a
400 naming it, never a filter silently ignored. The text is read as apimachinery reads it
(``kukeon.api.fieldterms``: escapes, nothing trimmed). Matched in Python after the range
read, like label selectors; a list and a watch apply the same parsed selector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, NamedTuple, TypeVar

from kukeon.api import AnyResource, Kind
from kukeon.api.fieldterms import FieldSelectorError, parse_raw, quoted

__all__ = [
    "FIELDS",
    "FieldSelector",
    "FieldSelectorError",
    "Term",
    "parse_field_selector",
    "parse_terms",
]

Getter = Callable[[AnyResource], str]
T = TypeVar("T")


def _status_text(field: str) -> Getter:
    def get(res: AnyResource) -> str:
        value = getattr(res.status, field, None)
        return "" if value is None else str(value)

    return get


def _spec_text(field: str) -> Getter:
    def get(res: AnyResource) -> str:
        value = getattr(res.spec, field, None)
        if isinstance(value, bool):
            return str(value).lower()
        return "" if value is None else str(value)

    return get


_COMMON: dict[str, Getter] = {
    "metadata.name": lambda res: res.metadata.name,
    "status.state": _status_text("state"),
    "status.reason": _status_text("reason"),
}
FIELDS: dict[Kind, dict[str, Getter]] = {
    Kind.REALM: _COMMON,
    Kind.SPACE: _COMMON,
    Kind.STACK: _COMMON,
    Kind.CELL: {**_COMMON, "spec.nodeName": _spec_text("node_name")},
    Kind.NODE: {**_COMMON, "spec.unschedulable": _spec_text("unschedulable")},
    Kind.SECRET: {"metadata.name": _COMMON["metadata.name"]},
    Kind.CELL_PROFILE: {"metadata.name": _COMMON["metadata.name"]},
    Kind.CELL_SET: {"metadata.name": _COMMON["metadata.name"]},
}


class Term(NamedTuple, Generic[T]):
    field: str
    equal: bool
    value: str
    get: Callable[[T], str]

    def matches(self, obj: T) -> bool:
        return (self.get(obj) == self.value) == self.equal


class FieldSelector(NamedTuple, Generic[T]):
    terms: tuple[Term[T], ...]

    def matches(self, obj: T) -> bool:
        return all(term.matches(obj) for term in self.terms)


def parse_terms(
    text: str | None, supported: Mapping[str, Callable[[T], str]], what: str
) -> FieldSelector[T]:
    """``f=v``, ``f==v``, ``f!=v``, comma-separated, as apimachinery reads them
    (``kukeon.api.fieldterms``), over the fields `supported` of `what` (a kind's name, for
    the messages); None or the empty text selects everything."""
    terms: list[Term[T]] = []
    for field, operator, value in parse_raw(text):
        get = supported.get(field)
        if get is None:
            known = ", ".join(sorted(supported))
            raise FieldSelectorError(
                f"field {quoted(field)} is not supported for {what}; use one of {known}"
            )
        terms.append(Term(field, operator != "!=", value, get))
    return FieldSelector(tuple(terms))


def parse_field_selector(kind: Kind, text: str | None) -> FieldSelector[AnyResource]:
    """A resource kind's selector (the fields of `FIELDS`)."""
    return parse_terms(text, FIELDS[kind], kind.value)
