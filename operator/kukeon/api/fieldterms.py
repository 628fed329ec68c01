"""A field selector's text as Kubernetes reads it (apimachinery's ``fields.ParseSelector``):
the one rule for the API server, which parses them, and kukectl, which writes them.

Terms are split on commas that no backslash escapes; empty terms are skipped (``a=b,`` is
``a=b``). A term is ``FIELD=VALUE``, ``FIELD==VALUE`` or ``FIELD!=VALUE``, split at the
first of those operators; nothing is trimmed (``status.state = Ready`` names the field
``'status.state '``, which no kind has). In a value ``\\\\``, ``\\,`` and ``\\=`` stand for
``\\``, ``,`` and ``=``; any other escape, a trailing ``\\`` and an unescaped ``,`` or ``=``
are refused. Only the empty text selects everything (``' '`` is a term without an operator).
"""

from __future__ import annotations

from typing import Final, NamedTuple

SELECTOR_MAX: Final = 4096
"""The longest selector text (characters) the API reads. kube-apiserver has no limit of its
own: its HTTP server bounds the request line and headers to 1 MiB. Here the request line
is at most 8190 bytes (``apiserver.lowlevel``), so a longer selector never arrives anyway."""

OPERATORS: Final = ("!=", "==", "=")
"""Tried in this order at each character, as apimachinery's ``splitTerm``."""

_ESCAPED: Final = frozenset("\\,=")


class FieldSelectorError(ValueError):
    """A selector that cannot be applied; the message names the term or the field."""


class RawTerm(NamedTuple):
    """One term as written: its field, operator and value (unescaped)."""

    field: str
    operator: str
    value: str


def escape_value(value: str) -> str:
    """``value`` as a term's value: ``\\``, ``,`` and ``=`` escaped (``EscapeValue``)."""
    return "".join("\\" + char if char in _ESCAPED else char for char in value)


def term(field: str, value: str, operator: str = "=") -> str:
    """One term choosing ``field`` ``operator`` ``value``, the value escaped."""
    return f"{field}{operator}{escape_value(value)}"


def split_terms(text: str) -> list[str]:
    """The terms of ``text``: split on each comma no backslash escapes (``splitTerms``)."""
    terms: list[str] = []
    start, escaped = 0, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def split_term(text: str) -> tuple[str, str, str] | None:
    """``(field, operator, raw value)`` at the first operator, or None when there is none."""
    for i, char in enumerate(text):
        if char not in "!=":
            continue
        for operator in OPERATORS:
            if text.startswith(operator, i):
                return text[:i], operator, text[i + len(operator) :]
    return None


def unescape_value(text: str) -> str:
    """A term's value with its escapes read (``UnescapeValue``); FieldSelectorError for an
    escape other than ``\\\\``, ``\\,``, ``\\=``, a trailing ``\\`` or a bare ``,`` or ``=``."""
    if not _ESCAPED.intersection(text):
        return text
    out: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            if char not in _ESCAPED:
                raise FieldSelectorError(
                    f"invalid escape sequence in value {quoted(text)}: a backslash then "
                    f"{quoted(char)} (the escapes are \\\\, \\, and \\=)"
                )
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise FieldSelectorError(
                f"unescaped {char!r} in value {quoted(text)} (write it \\{char})"
            )
        else:
            out.append(char)
    if escaped:
        raise FieldSelectorError(f"value {quoted(text)} ends in a lone '\\' (write \\\\)")
    return "".join(out)


def parse_raw(text: str | None) -> list[RawTerm]:
    """The terms of a selector, in the order written; [] for None or the empty text (which
    select everything). FieldSelectorError naming the term it cannot read."""
    if not text:
        return []
    if len(text) > SELECTOR_MAX:
        raise FieldSelectorError(f"{len(text)} characters long, over the limit of {SELECTOR_MAX}")
    parsed: list[RawTerm] = []
    for written in split_terms(text):
        if written == "":
            continue
        parts = split_term(written)
        if parts is None:
            raise FieldSelectorError(
                f"{quoted(written)} is not FIELD=VALUE, FIELD==VALUE or FIELD!=VALUE"
            )
        field, operator, value = parts
        parsed.append(RawTerm(field, operator, unescape_value(value)))
    return parsed


def quoted(text: str) -> str:
    """``text`` in quotes for a message, at most 100 characters of it, as written: a
    backslash is shown once (``repr`` doubled it, so ``'a\\b'`` looked like a valid
    escape); only what does not print is escaped."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:100])
    return f"'{shown}'" + ("..." if len(text) > 100 else "")
