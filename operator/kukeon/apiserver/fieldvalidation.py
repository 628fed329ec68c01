"""``fieldValidation``: what a write does with fields no model knows and keys given twice.

kube-apiserver's three levels (KEP-2885), on every create, update and patch (spec or
status) and on a profile run's body:

- ``Strict`` (the default here, see below): an unknown field is a 422 naming it, with every
  other invalid field; a key given twice in one object a 422 naming every such key.
- ``Warn``: each unknown field is dropped and each repeated key keeps its last value, and
  each is named in a ``Warning: 299 - "unknown field \\"spec.foo\\""`` (``duplicate field``)
  response header, on the answer whatever it is (a 422 for another field included).
- ``Ignore``: the same, without the warnings.

Anything else wrong with a document is refused at every level. kube-apiserver's default
when the parameter is absent is ``Warn`` (kubectl sends ``Strict`` unless told otherwise);
this server's stays ``Strict``, what it always did: a client that does not ask must not
have a typo'd field dropped without being told (no accepted-and-ignored fields), and one
that wants kube's leniency asks for it.

The warnings of a request are recorded on it (``warn``) and written as headers by
``requestoptions``' middleware, bounded as kube-apiserver bounds them (each cut to 256
characters, at most 4 KiB in all) and at most ``WARNINGS_MAX`` headers, so a body with
ten thousand unknown fields gets a short answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from kukeon.api import AnyResource
from kukeon.api.meta import quote
from kukeon.api.validation import droppable_unknown, format_path, without
from kukeon.apiserver import queryparams
from kukeon.apiserver.status import ApiError, Cause
from kukeon.apiserver.writerules import parse

STRICT = "Strict"
WARN = "Warn"
IGNORE = "Ignore"
LEVELS = (IGNORE, WARN, STRICT)

WARNINGS_KEY = web.RequestKey("kukeon_warnings", dict[str, None])
"""The warnings of a request, in the order found, each once (``warn``; a dict, as a list
searched for each new one made a body repeating 50,000 keys cost seconds)."""

CAUSES_MAX = 100
"""Repeated keys named as causes of a refusal at most (a 1 MiB body can repeat 50,000)."""

WARNING_MAX = 256
"""kube-apiserver's cut of one warning (``truncateItemRunes``)."""
WARNINGS_TOTAL_MAX = 4096
"""kube-apiserver's bound on all of a request's warnings (``truncateAtTotalRunes``)."""
WARNINGS_MAX = 32
"""Headers at most (one more says how many were left out): kukectl reads 100 lines."""

_DROP_ROUNDS = 4
M = TypeVar("M", bound=BaseModel)


def _bad(message: str) -> ApiError:
    return ApiError(
        400,
        f"query parameter fieldValidation: {message}",
        causes=[Cause("fieldValidation", message)],
    )


def level_of(request: web.Request) -> str:
    """The request's level: ``Strict`` when absent or empty; a 400 for any other word than
    kube-apiserver's three (matched exactly, as it matches them)."""
    value = queryparams.single(request, "fieldValidation")
    if value in (None, ""):
        return STRICT
    if value not in LEVELS:
        choices = ", ".join(repr(v) for v in LEVELS)
        raise _bad(f"must be one of {choices}, got {quote(value)}")
    return value


def warn(request: web.Request, text: str) -> None:
    """Record a warning for the answer's headers (once: a patch retried finds it again)."""
    found = request.get(WARNINGS_KEY)
    if found is None:
        request[WARNINGS_KEY] = found = {}
    found[text] = None


def _field(path: str) -> str:
    """A field's path as kube-apiserver quotes it (``"spec.foo"``): JSON's escapes, ASCII
    only (a key is the client's, any text), cut to a quotable length."""
    return json.dumps(path[:200] + ("..." if len(path) > 200 else ""))


def header_values(texts: list[str]) -> list[str]:
    """The ``Warning`` header values for ``texts``: ``299 - "text"`` with ``"`` and ``\\``
    escaped, only printable ASCII, bounded (``WARNING_MAX``, ``WARNINGS_TOTAL_MAX``,
    ``WARNINGS_MAX``)."""
    values: list[str] = []
    total = 0
    for index, text in enumerate(texts):
        if len(text) > WARNING_MAX:
            text = text[: WARNING_MAX - 3] + "..."
        if len(values) == WARNINGS_MAX or total + len(text) > WARNINGS_TOTAL_MAX:
            text = f"{len(texts) - index} more warnings are not shown"
            values.append(_header_value(text))
            break
        total += len(text)
        values.append(_header_value(text))
    return values


def _header_value(text: str) -> str:
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '299 - "' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_warnings(request: web.Request, response: web.StreamResponse) -> None:
    """The request's warnings as ``Warning`` headers of ``response`` (not yet sent)."""
    texts = request.get(WARNINGS_KEY)
    if texts and not response.prepared:
        for value in header_values(list(texts)):
            response.headers.add("Warning", value)


class FieldChecks:
    """One write's level, applied to its body's repeated keys and its document's fields."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.level = level_of(request)

    def repeated(self, paths: list[str]) -> None:
        """The keys the body repeated (their last values kept): refused, warned or not."""
        if not paths:
            return
        if self.level == STRICT:
            shown = ", ".join(quote(path) for path in paths[:10])
            more = f" and {len(paths) - 10} more" if len(paths) > 10 else ""
            raise ApiError(
                422,
                f"the request body gives a key twice in one object: duplicate key at {shown}{more}",
                causes=[
                    Cause(path, "duplicate key: given more than once")
                    for path in paths[:CAUSES_MAX]
                ],
            )
        if self.level == WARN:
            for path in paths:
                warn(self.request, f"duplicate field {_field(path)}")

    def parse(self, document: Mapping[str, Any]) -> AnyResource:
        """``writerules.parse`` at this level: unknown fields refused, or dropped (and
        warned of) with everything else still checked."""
        if self.level == STRICT:
            return parse(document)
        unknown: list[str] = []
        try:
            return parse(document, unknown_fields=unknown)
        finally:
            self._unknown(unknown)

    def model(
        self,
        model: type[M],
        document: Mapping[str, Any],
        refuse: Callable[[ValidationError], ApiError],
    ) -> M:
        """``model``'s validation of ``document`` at this level (a body that is no
        resource: a profile run's); ``refuse`` makes its errors a Status."""
        unknown: list[str] = []
        try:
            for _ in range(_DROP_ROUNDS):
                try:
                    return model.model_validate(document)
                except ValidationError as exc:
                    dropped = droppable_unknown(exc, document) if self.level != STRICT else []
                    if not dropped:
                        raise refuse(exc) from None
                    unknown.extend(format_path(loc, as_sent=True) for loc in dropped)
                    document = without(document, dropped)
            try:
                return model.model_validate(document)
            except ValidationError as exc:
                raise refuse(exc) from None
        finally:
            self._unknown(unknown)

    def _unknown(self, paths: list[str]) -> None:
        if self.level == WARN:
            for path in paths:
                warn(self.request, f"unknown field {_field(path)}")
