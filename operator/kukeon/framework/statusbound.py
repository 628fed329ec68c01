"""Bounds on what a controller writes into a status, so the write always fits the store.

A status repeats text kukeond did not choose: an error's message quoting a user's value,
what another node (or a user, through the status subresource) wrote in its entry, a line
per child or per node. Copied unbounded, that text grew a Space's status past the store's
document limit (``MAX_DOCUMENT_BYTES``): the write was refused at every pass, for good.
So every status a controller writes passes ``bounded`` first, as Kubernetes bounds a
condition's message (32 KiB) and kube-apiserver refuses large objects:

- each ``message`` is cut to ``MESSAGE_CHARS`` (at most 32 KiB of UTF-8) and each
  ``reason`` to ``REASON_CHARS``, wherever they are in the status (its nodes' entries, its
  conditions, its containers' and probes' results), ending in a marker that says how much
  was cut: nothing is dropped silently;
- when the document would still be over the limit (a spec or annotations that nearly fill
  it, many nodes' entries), each is cut again to ``TIGHT_MESSAGE_CHARS``.

A text already cut is not cut again (the marker fits in the bound), so writing the same
status twice writes the same bytes. What does not fit after both steps (a spec alone
over the limit) is left as it is: the store refuses it (``DocumentTooLarge``) and the
framework says so once (``processing``), with the usual backoff.

``listed`` caps a list of names said in a message the same way ("a, b and 3 more").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from kukeon.api.meta import storable_text
from kukeon.store import MAX_DOCUMENT_BYTES

MESSAGE_CHARS = 8192
"""A message's bound: 8192 characters are at most 32 KiB of UTF-8 (Kubernetes' bound)."""
REASON_CHARS = 128
"""A reason is one CamelCase word: an Event's reason has the same bound."""
TIGHT_MESSAGE_CHARS = 256
"""A message's bound when the document would not fit otherwise."""
COPIED_CHARS = 1024
"""A message quoted from another object or node into a parent's (a failed node's, in a
realm's, space's or stack's top-level message)."""
NAMES_SHOWN = 5
"""How many names ``listed`` shows before "and N more"."""

_HEADROOM = 1024
"""Room left under the limit for what the store adds to a written document."""
_MARKER_MAX = len("... (99999999999 more characters cut)")
_MARKED = re.compile(r"\.\.\. \((\d{1,11}) more characters cut\)\Z")

_LIMITS = {"message": MESSAGE_CHARS, "reason": REASON_CHARS}
_TIGHT_LIMITS = {"message": TIGHT_MESSAGE_CHARS, "reason": REASON_CHARS}

M = TypeVar("M", bound=BaseModel)


def cut_text(text: str, limit: int) -> str:
    """``text`` when it has at most ``limit`` characters; else its start and a marker that
    says how much was cut, ``limit`` characters in all (so it is never cut again).

    A text cut before is cut again as its whole would be (the marker counts from the
    original): a parent quoting a child's cut message, or a status cut harder, says the
    same words at every pass, and its writer finds nothing changed.
    NUL and lone surrogates, which no stored text may hold, are written as their escapes
    (``storable_text``): an error's text quoting one failed the whole status write.
    """
    text = storable_text(text)
    if len(text) <= limit:
        return text
    length = len(text)
    marked = _MARKED.search(text, max(length - _MARKER_MAX, 0))
    if marked is not None:
        text = text[: marked.start()]
        length = len(text) + int(marked.group(1))
    keep = max(limit - _MARKER_MAX, 0)
    return f"{text[:keep]}... ({length - keep} more characters cut)"


def listed(names: Iterable[str], most: int = NAMES_SHOWN) -> str:
    """``names`` joined with commas, the first ``most`` and "and N more" for the rest."""
    shown = list(names)
    text = ", ".join(shown[:most])
    return text + (f" and {len(shown) - most} more" if len(shown) > most else "")


def _cut(value: Any, limits: Mapping[str, int]) -> Any:
    """``value`` with every text field named in ``limits`` cut to its bound, at any depth
    of models, lists and maps; the same object when nothing was cut."""
    if isinstance(value, BaseModel):
        changes: dict[str, Any] = {}
        for name in type(value).model_fields:
            item = getattr(value, name)
            limit = limits.get(name)
            cut = cut_text(item, limit) if limit is not None and isinstance(item, str) else None
            if cut is None:
                cut = _cut(item, limits)
            if cut is not item:
                changes[name] = cut
        return value.model_copy(update=changes) if changes else value
    if isinstance(value, list):
        items = [_cut(item, limits) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        entries = {key: _cut(item, limits) for key, item in value.items()}
        return entries if any(entries[key] is not value[key] for key in value) else value
    return value


def bounded_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Status ``fields`` (name to value) as ``bounded`` first cuts them: for a writer
    that compares what it would write with what is stored before writing."""
    limits = _LIMITS
    return {
        name: cut_text(value, limits[name])
        if name in limits and isinstance(value, str)
        else _cut(value, limits)
        for name, value in fields.items()
    }


def _size(resource: BaseModel) -> int:
    """The bytes the store writes for ``resource`` (the codec's compact JSON)."""
    return len(resource.model_dump_json(by_alias=True, exclude_none=True).encode())


def bounded(resource: M) -> M:
    """``resource`` with its status bounded (see the module's docstring): the same object
    when nothing had to be cut."""
    status = getattr(resource, "status", None)
    if status is None:
        return resource
    fitted = _cut(status, _LIMITS)
    candidate = resource if fitted is status else resource.model_copy(update={"status": fitted})
    if _size(candidate) <= MAX_DOCUMENT_BYTES - _HEADROOM:
        return candidate
    tight = _cut(fitted, _TIGHT_LIMITS)
    return candidate if tight is fitted else resource.model_copy(update={"status": tight})


__all__ = [
    "COPIED_CHARS",
    "MESSAGE_CHARS",
    "NAMES_SHOWN",
    "REASON_CHARS",
    "TIGHT_MESSAGE_CHARS",
    "bounded",
    "bounded_fields",
    "cut_text",
    "listed",
]
