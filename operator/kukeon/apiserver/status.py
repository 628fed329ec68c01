"""Errors as Kubernetes-style ``Status`` objects, the only error shape a client ever sees.

Every failure of a request -- a user's mistake, a store conflict, a bug -- leaves the server
as one JSON document ``{kind: Status, apiVersion: v1, status: Failure, code, reason,
message, details: {name, kind, causes: [{field, message}]}}`` so kukectl (and curl users)
can print one readable line naming the field. Store errors are mapped here, in one table,
so the HTTP code of a given store outcome is the same on every route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from aiohttp import web

from kukeon.fileio import host_disk_refusal
from kukeon.store import (
    AlreadyExists,
    Conflict,
    EtcdAway,
    Gone,
    Invalid,
    NotFound,
    QuotaExceeded,
    StoreError,
    Unavailable,
)


class Cause(NamedTuple):
    """One thing wrong with a request, anchored on a field path when there is one;
    ``reason`` is Kubernetes' machine-readable cause type (``ResourceVersionTooLarge``)."""

    field: str
    message: str
    reason: str = ""


# HTTP code -> Kubernetes reason, for codes that have one canonical reason.
REASONS: Mapping[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    414: "RequestURITooLong",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    431: "RequestHeaderFieldsTooLarge",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
    507: "InsufficientStorage",
}


# A last bound on what a Status carries, whatever built it: the code that quotes user input
# cuts it to ~200 characters (``kukeon.api.meta.quote``); this catches the rest (a message
# from a library, a store error that repeats a selector) so no error echoes a megabyte.
MESSAGE_MAX = 4096
CAUSE_MESSAGE_MAX = 1024
FIELD_MAX = 256
CAUSES_MAX = 100


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class ApiError(Exception):
    """A request failed for a reason the client should be told about.

    Raised anywhere below the handlers; the error middleware renders it as a Status.
    Messages, fields and causes are bounded (``MESSAGE_MAX`` and friends).
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        name: str | None = None,
        kind: str | None = None,
        causes: Iterable[Cause] = (),
        headers: Mapping[str, str] | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        message = clip(message, MESSAGE_MAX)
        self.headers = dict(headers or {})
        """Sent with the Status (a 429's ``Retry-After``)."""
        self.retry_after_seconds = retry_after_seconds
        """``details.retryAfterSeconds``, and the ``Retry-After`` header, as kube-apiserver."""
        if retry_after_seconds is not None:
            self.headers.setdefault("Retry-After", str(retry_after_seconds))
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.name = clip(name, FIELD_MAX) if name is not None else None
        self.kind = kind
        self.causes = [
            Cause(
                clip(cause.field, FIELD_MAX), clip(cause.message, CAUSE_MESSAGE_MAX), cause.reason
            )
            for cause in list(causes)[:CAUSES_MAX]
        ]

    def to_status(self) -> dict[str, Any]:
        return status_document(
            code=self.code,
            reason=self.reason,
            message=self.message,
            name=self.name,
            kind=self.kind,
            causes=self.causes,
            retry_after_seconds=self.retry_after_seconds,
        )


def status_document(
    *,
    code: int,
    reason: str,
    message: str,
    name: str | None = None,
    kind: str | None = None,
    causes: Iterable[Cause] = (),
    success: bool = False,
    retry_after_seconds: int | None = None,
) -> dict[str, Any]:
    """The Status object; ``details`` carries only what is known."""
    details: dict[str, Any] = {}
    if name is not None:
        details["name"] = name
    if kind is not None:
        details["kind"] = kind
    cause_list = [
        {"field": c.field, "message": c.message, **({"reason": c.reason} if c.reason else {})}
        for c in causes
    ]
    if cause_list:
        details["causes"] = cause_list
    if retry_after_seconds is not None:
        details["retryAfterSeconds"] = retry_after_seconds
    document: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if success else "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    if details:
        document["details"] = details
    return document


def status_response(error: ApiError) -> web.Response:
    return web.json_response(error.to_status(), status=error.code, headers=error.headers)


# Store outcome -> (HTTP code, reason). Subclasses are matched in this order.
_STORE_ERRORS: tuple[tuple[type[StoreError], int, str], ...] = (
    (NotFound, 404, "NotFound"),
    (AlreadyExists, 409, "AlreadyExists"),
    (Conflict, 409, "Conflict"),
    (Invalid, 422, "Invalid"),
    (Gone, 410, "Gone"),
    (Unavailable, 503, "ServiceUnavailable"),
    (QuotaExceeded, 403, "Forbidden"),
)


def from_store_error(
    error: StoreError, *, kind: str | None = None, name: str | None = None
) -> ApiError:
    """Translate a registry exception into the ApiError the client sees."""
    code, reason = 500, "InternalError"
    for exc_type, exc_code, exc_reason in _STORE_ERRORS:
        if isinstance(error, exc_type):
            code, reason = exc_code, exc_reason
            break
    causes = [Cause(str(field), str(message)) for field, message in _causes_of(error)]
    # Only a refusal of an etcd known away asks to be retried: nothing was sent. A 503
    # after the retry budget carries no Retry-After (kukectl retries those that do).
    retry_after = error.retry_after_seconds if isinstance(error, EtcdAway) else None
    return ApiError(
        code,
        str(error) or reason,
        reason=reason,
        kind=kind,
        name=name,
        causes=causes,
        retry_after_seconds=retry_after,
    )


def _causes_of(error: StoreError) -> list[tuple[Any, Any]]:
    # The store's Invalid may carry field errors (FieldError-like pairs); others do not.
    raw = getattr(error, "causes", None) or []
    pairs: list[tuple[Any, Any]] = []
    for item in raw:
        if isinstance(item, tuple) and len(item) == 2:
            pairs.append((item[0], item[1]))
        else:
            pairs.append(("", item))
    return pairs


def host_disk_refused(error: BaseException) -> ApiError | None:
    """The 507 of a request a write to the node's disk failed for (full, over quota,
    read-only), naming the file and the errno's words; None for any other error. What the
    disk refuses is no server bug: it is answered so, not as a 500 with a traceback."""
    refusal = host_disk_refusal(error)
    if refusal is None:
        return None
    reason, refused = refusal
    where = f" writing {refused.filename}" if refused.filename else ""
    return ApiError(
        507,
        f"the node's disk refused a write ({refused.strerror or refused}{where}): free room "
        "on the node (kukeond's state directory, containerd's root) and retry",
        reason=reason,
    )
