"""Label selectors, Kubernetes equality-based syntax: ``a=b,c!=d,e,!f``.

Parsed once into requirements and matched in Python after the range read: etcd has no
secondary indexes, and the list is still read at one revision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple

from .errors import Invalid

_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME_MAX = 63
"""A label key's name (after any `prefix/`) and a label value: at most this many characters."""
LABEL_PREFIX_MAX = 253


def label_key_problem(key: str, *, what: str = "a label key") -> str | None:
    """Why ``key`` cannot be a label key (one a selector can name), or None. Annotation
    keys follow the same rule in Kubernetes (``what`` names which it is)."""
    prefix, _, name = key.rpartition("/")
    if not _KEY.match(key) or len(name) > LABEL_NAME_MAX or len(prefix) > LABEL_PREFIX_MAX:
        return (
            f"is not {what}: [prefix/]name, the name at most 63 letters, digits, '-', '_' "
            "and '.', alphanumeric at both ends"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a label value (one a selector can name), or None."""
    if not _VALUE.match(value) or len(value) > LABEL_NAME_MAX:
        return (
            "is not a label value: empty, or at most 63 letters, digits, '-', '_' and '.', "
            "alphanumeric at both ends"
        )
    return None


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    NOT_EXISTS = "!exists"


class Requirement(NamedTuple):
    key: str
    operator: Operator
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case Operator.EQUALS:
                return labels.get(self.key) == self.value
            case Operator.NOT_EQUALS:
                return labels.get(self.key) != self.value
            case Operator.EXISTS:
                return self.key in labels
            case Operator.NOT_EXISTS:
                return self.key not in labels


class LabelSelector(NamedTuple):
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        present = labels or {}
        return all(requirement.matches(present) for requirement in self.requirements)


def _invalid(selector: str, term: str, why: str) -> Invalid:
    from kukeon.api import FieldError

    message = f"label selector {selector!r}: {term!r} {why}"
    return Invalid(message, causes=[FieldError("labelSelector", f"{term!r} {why}")])


def parse_selector(selector: str | None) -> LabelSelector:
    """Parse ``a=b,a==b,c!=d,e,!f``; an empty or None selector matches everything."""
    if selector is None or not selector.strip():
        return LabelSelector(())
    requirements: list[Requirement] = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            raise _invalid(selector, raw, "is an empty term")
        if "!=" in term:
            key, _, value = term.partition("!=")
            operator = Operator.NOT_EQUALS
        elif "==" in term:
            key, _, value = term.partition("==")
            operator = Operator.EQUALS
        elif "=" in term:
            key, _, value = term.partition("=")
            operator = Operator.EQUALS
        elif term.startswith("!"):
            key, value, operator = term[1:], "", Operator.NOT_EXISTS
        else:
            key, value, operator = term, "", Operator.EXISTS
        key, value = key.strip(), value.strip()
        if label_key_problem(key) is not None:
            raise _invalid(selector, term, f"has an invalid label key {key!r}")
        if label_value_problem(value) is not None:
            raise _invalid(selector, term, f"has an invalid label value {value!r}")
        requirements.append(Requirement(key, operator, value))
    return LabelSelector(tuple(requirements))
