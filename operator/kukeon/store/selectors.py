"""Label selectors, Kubernetes' syntax (apimachinery's ``labels.Parse``): ``a=b``, ``a==b``,
``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a`` (exists), ``!a`` (does not exist), ``a>5``
and ``a<5`` (``Gt``, ``Lt``: integers), joined by commas.

``>`` and ``<`` are apimachinery's to the letter: the operand is one label value that Go's
``strconv.ParseInt(v, 10, 64)`` reads (ASCII digits, an optional sign, within int64), or
the selector is refused naming the term; an object is chosen when it has the key and its
value reads as such an integer greater (less) than the operand, never otherwise (a label
``7.5``, ``x`` or ``99999999999999999999`` is chosen by neither).

Parsed once into requirements and matched in Python after the range read: etcd has no
secondary indexes, and the list is still read at one revision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple

from kukeon.api.labelrules import label_key_problem, label_value_problem

from .errors import Invalid


class Operator(StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!exists"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def parse_int64(text: str) -> int | None:
    """``text`` as Go's ``strconv.ParseInt(text, 10, 64)`` reads it, or None (ASCII digits
    only, one optional sign, no spaces or underscores, within int64; leading zeros as many
    as given: a 25-character ``0...07`` is 7 there too)."""
    if not _INT64.fullmatch(text):
        return None
    sign = text[0] if text[0] in "+-" else ""
    digits = text[len(sign) :].lstrip("0")
    if len(digits) > 19:  # past int64 whatever they are (and never a long int() to make)
        return None
    number = int(sign + (digits or "0"))
    return number if _INT64_MIN <= number <= _INT64_MAX else None


class Requirement(NamedTuple):
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        # As Kubernetes': != and notin also match an object without the key.
        match self.operator:
            case Operator.EQUALS | Operator.IN:
                return self.key in labels and labels[self.key] in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return labels.get(self.key) not in self.values
            case Operator.EXISTS:
                return self.key in labels
            case Operator.NOT_EXISTS:
                return self.key not in labels
            case Operator.GREATER_THAN | Operator.LESS_THAN:
                return self._compares(labels.get(self.key))

    def _compares(self, value: str | None) -> bool:
        """``Gt``/``Lt``: the label's value read as an int64 (else not chosen) against the
        operand (one, an int64: the parser saw to it)."""
        number = parse_int64(value) if value is not None else None
        [operand] = self.values
        bound = parse_int64(operand)
        if number is None or bound is None:
            return False
        return number > bound if self.operator == Operator.GREATER_THAN else number < bound


class LabelSelector(NamedTuple):
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        present = labels or {}
        return all(requirement.matches(present) for requirement in self.requirements)


_SHOWN_MAX = 100
"""The most characters of a selector, term, key or value a message quotes: a 4096-character
term was quoted whole, as was its key, up to the Status message's bound (4 KB of one key
printed by kukectl)."""


def _clip(text: str) -> str:
    return repr(text[:_SHOWN_MAX]) + (
        f"... ({len(text)} characters)" if len(text) > _SHOWN_MAX else ""
    )


def _invalid(selector: str, term: str, why: str) -> Invalid:
    from kukeon.api import FieldError

    message = f"label selector {_clip(selector)}: {_clip(term)} {why}"
    return Invalid(message, causes=[FieldError("labelSelector", f"{_clip(term)} {why}")])


_SPECIALS = "=!(),<>"
_OPERATORS = {"=": Operator.EQUALS, "==": Operator.EQUALS, "!=": Operator.NOT_EQUALS}
_COMPARISONS = {">": Operator.GREATER_THAN, "<": Operator.LESS_THAN}
_SETS = {"in": Operator.IN, "notin": Operator.NOT_IN}
_END = ""
"""The token at the end of the text."""
_BLANKS = " \t\r\n"
"""What apimachinery's lexer skips between tokens (``isWhitespace``: space, tab, CR, LF),
and nothing more: any other space (vertical tab, form feed, U+00A0, U+3000, ...) is part
of a key or value, which then does not validate. Python's ``str.isspace`` took them for
blanks, so ``a=b`` followed by U+00A0 chose ``a=b`` where kube-apiserver refuses it."""


def _tokens(text: str) -> list[tuple[str, int]]:
    """apimachinery's lexer: ``!``, ``!=``, ``=``, ``==``, ``>``, ``<``, ``(``, ``)``, ``,``
    and runs of anything else but its four blanks (identifiers, keywords among them); each
    with its offset (``>=`` is ``>`` then ``=``, as there)."""
    tokens: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in _BLANKS:
            i += 1
        elif char in _SPECIALS:
            two = text[i : i + 2]
            size = 2 if two in ("!=", "==") else 1
            tokens.append((text[i : i + size], i))
            i += size
        else:
            j = i
            while j < len(text) and text[j] not in _BLANKS and text[j] not in _SPECIALS:
                j += 1
            tokens.append((text[i:j], i))
            i = j
    tokens.append((_END, len(text)))
    return tokens


def _is_word(token: str) -> bool:
    return token != _END and token[0] not in _SPECIALS


def _shown(token: str) -> str:
    return "end of string" if token == _END else repr(token)


class _Parser:
    """``labels.Parse``'s grammar, one requirement at a time; an error names the term (the
    requirement's text up to its comma outside parentheses) and what was expected."""

    def __init__(self, selector: str) -> None:
        self.selector = selector
        self.tokens = _tokens(selector)
        self.at = 0
        self.start = 0

    def peek(self) -> str:
        return self.tokens[self.at][0]

    def take(self) -> str:
        token = self.tokens[self.at][0]
        if token != _END:
            self.at += 1
        return token

    def term(self) -> str:
        depth, end = 0, len(self.selector)
        for token, offset in self.tokens:
            if offset < self.start:
                continue
            depth += token == "("
            depth -= token == ")"
            if token == "," and depth <= 0:
                end = offset
                break
        return self.selector[self.start : end].strip(_BLANKS) or self.selector[self.start : end]

    def fail(self, why: str) -> Invalid:
        term = self.term()
        if not term.strip(", "):  # `a,` or `a,,b`: say where, an empty quote says nothing
            term = f"the empty term at character {self.start}"
        return _invalid(self.selector, term, why)

    def expected(self, found: str, what: str) -> Invalid:
        return self.fail(f"is not a requirement: found {_shown(found)}, expected {what}")

    def requirements(self) -> tuple[Requirement, ...]:
        parsed: list[Requirement] = []
        while True:
            self.start = self.tokens[self.at][1]
            parsed.append(self.requirement())
            token = self.take()
            if token == _END:
                return tuple(parsed)
            if token != ",":
                raise self.expected(token, "',' or end of string")

    def requirement(self) -> Requirement:
        negated = self.peek() == "!"
        if negated:
            self.take()
        key = self.take()
        if not _is_word(key):
            raise self.expected(key, "a label key")
        if label_key_problem(key) is not None:
            raise self.fail(f"has an invalid label key {_clip(key)}")
        following = self.peek()
        if negated or following in (",", _END):
            return Requirement(key, Operator.NOT_EXISTS if negated else Operator.EXISTS)
        self.take()
        if following in _OPERATORS:
            value = self.peek()
            value = self.take() if _is_word(value) else ""  # `a=` is `a` with value ""
            return Requirement(key, _OPERATORS[following], self.checked({value}))
        if following in _SETS:
            return Requirement(key, _SETS[following], self.checked(self.value_set()))
        if following in _COMPARISONS:
            return Requirement(key, _COMPARISONS[following], self.integer())
        raise self.expected(following, "in, notin, =, ==, !=, >, < (or ',' or end of string)")

    def integer(self) -> frozenset[str]:
        """``>``'s and ``<``'s operand: one label value that is an int64 (``NewRequirement``)."""
        token = self.peek()
        if token not in (",", _END) and not _is_word(token):
            raise self.expected(self.take(), "an integer")
        value = self.take() if _is_word(token) else ""
        values = self.checked({value}) if value else frozenset({value})
        if parse_int64(value) is None:
            raise self.fail(f"has {_clip(value)} after > or <, which must be an integer (int64)")
        return values

    def value_set(self) -> set[str]:
        opening = self.take()
        if opening != "(":
            raise self.expected(opening, "'('")
        values: set[str] = set()
        while True:  # `(a,,b)` and `()` hold "", as in apimachinery
            token = self.peek()
            values.add(self.take() if _is_word(token) else "")
            closing = self.take()
            if closing == ")":
                return values
            if closing != ",":
                raise self.expected(closing, "',' or ')'")

    def checked(self, values: set[str]) -> frozenset[str]:
        for value in sorted(values):
            if label_value_problem(value) is not None:
                raise self.fail(f"has an invalid label value {_clip(value)}")
        return frozenset(values)


def parse_selector(selector: str | None) -> LabelSelector:
    """Parse a selector (Kubernetes' grammar); an empty or None selector matches everything."""
    if selector is None or not selector.strip(_BLANKS):
        return LabelSelector(())
    return LabelSelector(_Parser(selector).requirements())
