"""The two ways a call of the API fails, and how an answer becomes one.

``ApiRequestError`` carries the server's Status (code, reason, message, field causes, and
for a 429 the wait its ``Retry-After`` asked for); ``ServerUnreachable`` names the address
that could not be reached.
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
        details = status.get("details") or {}
        causes = [
            StatusCause(
                str(c.get("field", "")), str(c.get("message", "")), str(c.get("reason", ""))
            )
            for c in details.get("causes") or []
            if isinstance(c, Mapping)
        ]
        return cls(
            int(status.get("code") or http_code),
            str(status.get("reason") or "Unknown"),
            str(status.get("message") or f"HTTP {http_code}"),
            kind=details.get("kind"),
            name=details.get("name"),
            causes=causes,
            retry_after=retry_after,
        )


def decode_answer(
    status: int, reason: str | None, raw: bytes, *, retry_after: str | None = None
) -> Any:
    """The decoded JSON of an answer (its text when it is not JSON), or ApiRequestError for
    a failure (``retry_after``: the answer's header, kept on the error)."""
    document: Any
    try:
        document = json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # RecursionError: JSON nested past Python's stack
        document = None
    if status >= 400:
        if isinstance(document, Mapping) and document.get("kind") == "Status":
            raise ApiRequestError.from_status(document, status, retry_after=retry_after)
        text = raw.decode(errors="replace").strip() or reason or ""
        raise ApiRequestError(status, reason or "Error", text, retry_after=retry_after)
    if document is None and raw:
        return raw.decode(errors="replace")
    return document
