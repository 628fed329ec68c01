"""The two ways a call of the API fails, and how an answer becomes one.

``ApiRequestError`` carries the server's Status (code, reason, message, field causes, and
for a 429 the wait its ``Retry-After`` asked for); ``ServerUnreachable`` names the address
that could not be reached. A successful answer that is not what its request returns (not
JSON, or JSON of another shape: a broken proxy, another server on the address) is an
``UnreadableAnswer``, an ``ApiRequestError`` naming the request and the answer's first
bytes, not a Python error out of whoever reads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple


class ServerUnreachable(Exception):  # noqa: N818 - reads as what happened
    """The server could not be reached (no socket, connection refused, TLS failure)."""


class StatusCause(NamedTuple):
    field: str
    message: str
    reason: str = ""
    """Kubernetes' cause type, when the server names one (``ResourceVersionTooLarge``)."""


class ApiRequestError(Exception):
    """The server answered with a failure Status."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        kind: str | None = None,
        name: str | None = None,
        causes: Sequence[StatusCause] = (),
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.kind = kind
        self.name = name
        self.causes = list(causes)
        self.retry_after = retry_after
        """The answer's ``Retry-After`` header, as sent (``kukeon.client.busy`` reads it)."""

    @classmethod
    def from_status(
        cls, status: Mapping[str, Any], http_code: int, *, retry_after: str | None = None
    ) -> ApiRequestError:
        """The error a Status says; a field of another type than a Status's is left out
        (``details: 5``, ``code: "x"``): the failure is still the server's answer."""
        details = status.get("details")
        details = details if isinstance(details, Mapping) else {}
        listed = details.get("causes")
        causes = [
            StatusCause(
                str(c.get("field", "")), str(c.get("message", "")), str(c.get("reason", ""))
            )
            for c in (listed if isinstance(listed, list) else [])
            if isinstance(c, Mapping)
        ]
        code = status.get("code")
        return cls(
            code if isinstance(code, int) and 400 <= code < 600 else http_code,
            str(status.get("reason") or "Unknown"),
            str(status.get("message") or f"HTTP {http_code}"),
            kind=_text(details.get("kind")),
            name=_text(details.get("name")),
            causes=causes,
            retry_after=retry_after,
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


SHOWN_BYTES = 100
"""How much of an unreadable answer its error shows."""


def shown(raw: bytes | str, total: int | None = None) -> str:
    """The first ``SHOWN_BYTES`` of an answer, quoted, for a message (``total``: the whole
    answer's length, when ``raw`` is only its start)."""
    data = raw.encode() if isinstance(raw, str) else raw
    size = len(data) if total is None else total
    if not data:
        return "(empty)"
    text = repr(data[:SHOWN_BYTES].decode(errors="replace"))
    return text + (f" ... ({size} bytes)" if size > SHOWN_BYTES else "")


class UnreadableAnswer(ApiRequestError):  # noqa: N818 - reads as what came
    """A successful answer that is not what its request returns; the message names the
    request (``GET /apis/...``), what the answer is not, and its first bytes."""

    def __init__(self, request: str, what: str, raw: bytes | str) -> None:
        super().__init__(
            500,
            "InternalError",
            f"the server's answer to {request} is {what}: {shown(raw)}",
        )


def malformed_answer(request: str, answer_is: str) -> ApiRequestError:
    """An answer the client could not read as HTTP (not HTTP at all, a bad header line, a
    body cut short, one past the size read): the server was reached and answered, so it is
    said as that answer, naming the request, not as a server that could not be reached.
    ``answer_is`` follows "is" ("not valid HTTP: ...", "cut short: ...")."""
    return ApiRequestError(500, "InternalError", f"the server's answer to {request} is {answer_is}")


def listed(
    answer: Mapping[str, Any], field: str, answer_to: str, *, of: type = str, optional: bool = False
) -> list[Any]:
    """An answer's ``field``, an array of ``of`` (``str``, ``dict``); an ``UnreadableAnswer``
    naming ``answer_to`` when it is something else, or absent unless ``optional`` (then
    empty)."""
    value = answer.get(field, [] if optional else None)
    if not isinstance(value, list) or not all(isinstance(item, of) for item in value):
        kind = "objects" if of is dict else "strings"
        raise UnreadableAnswer(
            answer_to,
            f"not what kukectl reads: its {field} is not an array of {kind}",
            json.dumps(answer, separators=(",", ":")),
        )
    return value


def decode_answer(
    status: int,
    reason: str | None,
    raw: bytes,
    *,
    retry_after: str | None = None,
    request: str | None = None,
) -> Any:
    """The decoded JSON of an answer, or ApiRequestError for a failure (``retry_after``: the
    answer's header, kept on the error).

    With ``request`` (``"GET /apis/..."``), a success must be a JSON object, as every
    answer of the API's JSON routes is: anything else is an ``UnreadableAnswer`` naming
    it. Without, a success that is not JSON is returned as its text (``/readyz``)."""
    document: Any
    try:
        document = json.loads(raw) if raw else None
        readable = True
    except (ValueError, RecursionError):  # RecursionError: JSON nested past Python's stack
        document, readable = None, False
    if status >= 400:
        if isinstance(document, Mapping) and document.get("kind") == "Status":
            raise ApiRequestError.from_status(document, status, retry_after=retry_after)
        text = raw.decode(errors="replace").strip() or reason or ""
        raise ApiRequestError(status, reason or "Error", text, retry_after=retry_after)
    if request is not None and not isinstance(document, dict):
        what = "not JSON" if not readable else f"JSON {_json_type(document)}, not an object"
        raise UnreadableAnswer(request, "empty" if not raw else what, raw)
    if document is None and raw:
        return raw.decode(errors="replace")
    return document


def _json_type(document: Any) -> str:
    if document is None:
        return "null"
    if isinstance(document, bool):
        return "a boolean"
    if isinstance(document, list):
        return "an array"
    if isinstance(document, str):
        return "a string"
    return "a number"
