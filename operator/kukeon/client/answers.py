"""What an answer of the API holds, read as the client reads it: an object (``parse_object``),
a list (``list_items``), a watch's event (``watch_event``), the server's ``Warning`` headers
(``warning_texts``). What is not of the shape its request returns is an ``UnreadableAnswer``
naming the request, never a Python error out of whoever reads it."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kukeon.client.errors import ApiRequestError, UnreadableAnswer

if TYPE_CHECKING:
    from kukeon.api import AnyResource

Documents = list[dict[str, Any]]
"""Objects as the server wrote them: JSON objects, not validated."""


def parse_object(document: Any, answer_to: str | None = None) -> AnyResource:
    """The model of a document the server sent (a newer server's status fields left out:
    ``api.tolerant``); a document that is not valid is the server's failure (500), not the
    caller's. ``answer_to`` names the request it answers (``GET /apis/...``)."""
    from kukeon.api import InvalidResource
    from kukeon.api.tolerant import parse_tolerating_status

    if not isinstance(document, dict):
        raise UnreadableAnswer(answer_to or "a request", "not an object", json.dumps(document))
    try:
        return parse_tolerating_status(document)
    except InvalidResource as exc:
        said = f"the server's answer to {answer_to}" if answer_to else "the server's object"
        raise ApiRequestError(
            500, "InternalError", f"{said} is not an object kukectl can read: {exc}"
        ) from exc


def list_items(document: Mapping[str, Any], answer_to: str) -> tuple[Documents, int]:
    """A list answer's items (the JSON objects among them) and its resourceVersion; an
    ``UnreadableAnswer`` when it has no list of items or no resourceVersion."""
    items = document.get("items")
    metadata = document.get("metadata")
    revision = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
    if items is not None and not (
        isinstance(items, list) and all(isinstance(item, dict) for item in items)
    ):
        raise UnreadableAnswer(
            answer_to, "not a list: its items are not an array of objects", compact_json(document)
        )
    if not (isinstance(revision, str) and revision.isdigit()) and type(revision) is not int:
        raise UnreadableAnswer(
            answer_to, "not a list: it has no metadata.resourceVersion", compact_json(document)
        )
    return list(items or []), int(revision)


def watch_event(event: Any, answer_to: str, line: bytes) -> tuple[str, dict[str, Any], int]:
    """A watch event's type, object and the object's resourceVersion (0 when it has none);
    an ``UnreadableAnswer`` for a line that is no event."""
    obj = event.get("object") if isinstance(event, dict) else None
    if not isinstance(obj, dict) or not isinstance(event.get("type"), str):
        raise UnreadableAnswer(answer_to, "not a watch event", line.strip())
    metadata = obj.get("metadata")
    revision = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    text = str(revision or "")
    return event["type"], obj, int(text) if text.isdigit() else 0


def compact_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def warning_text(header: str) -> str:
    """The text of a ``Warning: 299 - "text"`` header (RFC 7234, as kube-apiserver's)."""
    return "; ".join(warning_texts(header))


def warning_texts(header: str) -> list[str]:
    """The texts of a ``Warning`` header's values (RFC 7234: ``code agent "text" ["date"]``,
    comma-separated; ``\"`` and ``\\`` unescaped), as client-go's ``ParseWarningHeaders``
    reads them; a header that is not of that form is its own text."""
    texts: list[str] = []
    rest = header.strip()
    while rest:
        code, _, rest = rest.partition(" ")
        agent, _, rest = rest.lstrip(" ").partition(" ")
        parsed = _quoted(rest.lstrip(" ")) if code.isdigit() and agent else None
        if parsed is None:
            return [header]
        text, rest = parsed
        texts.append(text)
        dated = _quoted(rest.lstrip(" ")) if rest.lstrip(" ").startswith('"') else None
        rest = (dated[1] if dated is not None else rest).lstrip(" ")
        if rest and not rest.startswith(","):
            return [header]
        rest = rest[1:].lstrip(" ")
    return texts


def _quoted(text: str) -> tuple[str, str] | None:
    """A quoted-string at the start of ``text``, unescaped, and what follows it."""
    if not text.startswith('"'):
        return None
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            return "".join(out), text[index + 1 :]
        out.append(char)
        index += 1
    return None


def print_warning(text: str) -> None:
    print(f"Warning: {text}", file=sys.stderr)
