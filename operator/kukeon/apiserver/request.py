"""What a request to the resource routes carries: its caller, its body and its selectors.

The authentication middleware (``app``) leaves the caller on the request under
``PRINCIPAL_KEY``; the handlers read the body through ``read_body`` (size first, then
``bodies``' bounded decoding) and the selectors through ``label_selector`` and
``field_filter``, which turn a malformed one into a 400 naming it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web

from kukeon.api import AnyResource, Kind
from kukeon.api.meta import quote
from kukeon.apiserver import queryparams
from kukeon.apiserver.auth import Principal
from kukeon.apiserver.bodies import (
    BODY_MEDIA_TYPES,
    JSON_MEDIA_TYPE,
    BodyError,
    decode_body,
    decode_off_loop,
    thread_threshold,
)
from kukeon.apiserver.expect import send_continue
from kukeon.apiserver.fieldselector import FieldSelector, FieldSelectorError, parse_field_selector
from kukeon.apiserver.fieldvalidation import FieldChecks
from kukeon.apiserver.status import ApiError, Cause
from kukeon.store import Invalid, LabelSelector, parse_selector

PRINCIPAL_KEY = web.RequestKey("kukeon_principal", Principal)
"""Where the auth middleware leaves the authenticated caller on the request."""

_SELECTOR_MAX = 4096


def principal_of(request: web.Request) -> Principal:
    principal = request.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        # Only reachable if the app was built without its auth middleware: refuse.
        raise ApiError(401, "Unauthorized: the request was not authenticated")
    return principal


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true", "yes"}


def is_watch(request: web.Request) -> bool:
    """Lenient, for the middlewares (which must not fail); the handler parses it strictly."""
    return _is_true(request.query.get("watch"))


def json_answer(document: Any, status: int = 200) -> web.Response:
    """``document`` as compact JSON."""
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def check_media_type(request: web.Request, accepted: frozenset[str]) -> None:
    """A 415 naming the Content-Type when the body's is not one of ``accepted``.

    A body without a Content-Type is refused too, as kube-apiserver does: read as JSON by
    default, a YAML manifest sent by a client that forgot the header would fail later with
    a misleading JSON syntax error (and curl's ``-d`` says form data, not JSON).
    """
    sent = request.headers.get("Content-Type", "").strip()
    if sent and request.content_type.lower() in accepted:
        return
    what = f"Content-Type {quote(sent)} is not supported" if sent else "it has no Content-Type"
    if accepted == BODY_MEDIA_TYPES:
        wanted = f"{JSON_MEDIA_TYPE} or application/yaml"
    else:
        wanted = " or ".join(sorted(accepted))
    raise ApiError(
        415,
        f"the request body cannot be read: {what}; send it as {wanted}",
        causes=[Cause("Content-Type", f"must be {wanted}")],
    )


async def read_body(
    request: web.Request,
    limit: int,
    media_types: frozenset[str] = BODY_MEDIA_TYPES,
    checks: FieldChecks | None = None,
) -> Any:
    """The request body as a document (JSON, or YAML when the content type says so).

    The Content-Type must be one of ``media_types`` (a 415 before the body is read:
    ``check_media_type``).

    A Content-Length over ``limit`` is a 413 before a byte is read (aiohttp would read
    ``limit`` bytes first, and wait for a body a client only announced); aiohttp enforces
    the limit again while reading a chunked body. ``kukeon.apiserver.bodies`` bounds the
    nesting depth and refuses repeated keys, or with ``checks`` (a write's
    ``fieldValidation``) keeps their last values and lets the level decide, and bounds a
    YAML body's nodes. A large body is decoded on the body threads (``decode_off_loop``).
    """
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(
            413, f"the request body of {length} bytes is larger than the limit of {limit} bytes"
        )
    if not request.body_exists:
        raise ApiError(400, "the request needs a body")
    check_media_type(request, media_types)
    await send_continue(request)
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "the request needs a body")
    content_type = request.content_type
    repeated: list[str] | None = [] if checks is not None else None
    decode = functools.partial(decode_body, raw, content_type, duplicates=repeated)
    try:
        off_loop = len(raw) > thread_threshold(content_type)
        body = await decode_off_loop(decode) if off_loop else decode()
    except BodyError as exc:
        causes = [Cause(exc.field, exc.message)] if exc.field else []
        raise ApiError(exc.code, exc.message, causes=causes) from None
    if checks is not None and repeated:
        checks.repeated(repeated)
    return body


@functools.lru_cache(maxsize=256)
def _parsed_selector(text: str | None) -> LabelSelector:
    """``parse_selector``, remembered: clients repeat their selectors (an immutable answer;
    a malformed one raises each time, as lru_cache keeps no exception)."""
    return parse_selector(text)


def label_selector(request: web.Request) -> tuple[str | None, LabelSelector]:
    """``labelSelector``, parsed. A bad one is a 400 whose message is its cause, named by the
    parameter (as ``fieldSelector``'s): clients print the message and the causes it does not
    say, so a message saying the problem in other words had kukectl print it twice."""
    text = queryparams.single(request, "labelSelector")
    if text is not None and len(text) > _SELECTOR_MAX:
        why = f"{len(text)} characters long, over the limit of {_SELECTOR_MAX}"
        raise ApiError(400, f"labelSelector: {why}", causes=[Cause("labelSelector", why)])
    try:
        return text, _parsed_selector(text)
    except Invalid as exc:
        causes = [Cause(c[0], c[1]) for c in exc.causes]
        said = "; ".join(f"{c.field}: {c.message}" for c in causes) or str(exc)
        raise ApiError(400, said, causes=causes) from None


def field_filter(request: web.Request, kind: Kind) -> FieldSelector[AnyResource]:
    """``fieldSelector``: the fields each kind supports (``apiserver/fieldselector.py``)."""
    text = queryparams.single(request, "fieldSelector")
    try:
        return parse_field_selector(kind, text)
    except FieldSelectorError as exc:
        raise ApiError(
            400, f"fieldSelector: {exc}", causes=[Cause("fieldSelector", str(exc))]
        ) from None


_JSON_RANGES = frozenset({"*/*", "application/*", JSON_MEDIA_TYPE})


def check_accept(request: web.Request) -> None:
    """A 406 when the ``Accept`` header asks only for what the resource routes never send
    (YAML, protobuf, a Table, HTML), as kube-apiserver's: such a client was answered JSON
    it had not asked for and failed decoding it. No header, ``*/*`` or JSON is fine; a JSON
    range with ``as=`` (a conversion, kubectl's Table) is another type, and ``q=0`` refuses."""
    header = request.headers.get("Accept", "")
    if not header or header in _JSON_RANGES:
        return  # what kukectl, curl and most clients send: one range, JSON or anything
    header = header.strip()
    for media_range in header.split(","):
        kind, *parameters = (part.strip() for part in media_range.split(";"))
        params = {
            name.strip().lower(): value.strip()
            for name, _, value in (p.partition("=") for p in parameters)
        }
        if kind.lower() not in _JSON_RANGES or "as" in params:
            continue
        if params.get("q") not in ("0", "0.0", "0.00", "0.000"):
            return
    raise ApiError(
        406,
        f"only {JSON_MEDIA_TYPE} is served here; the Accept header asks for {quote(header)}",
        reason="NotAcceptable",
    )


def refuse_body(request: web.Request, parameters: str) -> None:
    """A 400 for a body sent to a route that reads only its query (``parameters`` names
    them): ``{"signal": "KILL"}`` posted to a cell's kill was ignored and SIGTERM sent."""
    if request.body_exists:
        raise ApiError(
            400,
            f"{request.method} {request.path} takes no request body: its parameters are the "
            f"query's ({parameters})",
            causes=[Cause("body", "this route reads no body")],
        )
