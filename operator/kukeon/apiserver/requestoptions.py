"""The query parameters kube-apiserver takes on every resource route: ``pretty``, and on a
write ``fieldValidation`` and ``fieldManager``; each has its effect or is a 400 naming it.

- ``pretty=true`` indents the JSON answer (and a Status error) as kube-apiserver does;
  watch streams stay one compact event per line. A value that is no boolean is a 400.
- ``fieldValidation``: only ``Strict`` is carried out, and is what every write does
  already (an unknown or repeated field is a 422 naming it); ``Warn`` and ``Ignore`` (drop
  unknown fields) are refused with a 400 rather than answered as ``Strict`` (a client asking
  to have unknown fields dropped would see them refused without being told why), and any
  other value is a 400 as in kube-apiserver.
- ``fieldManager``: checked as kube-apiserver checks it (at most 128 printable
  characters); kukeon keeps no ``managedFields``, so a valid one has nothing to record.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from kukeon.api.meta import quote
from kukeon.apiserver import queryparams
from kukeon.apiserver.status import ApiError, Cause, status_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STRICT = "Strict"
_FIELD_VALIDATIONS = ("Ignore", "Warn", STRICT)
FIELD_MANAGER_MAX = 128
"""kube-apiserver's limit on ``fieldManager`` (``ValidateFieldManager``)."""
_WRITES = frozenset({"POST", "PUT", "PATCH"})
_RESOURCE_ROUTES = "/apis/"


def _bad(name: str, message: str) -> ApiError:
    return ApiError(400, f"query parameter {name}: {message}", causes=[Cause(name, message)])


def check_field_validation(request: web.Request) -> None:
    value = queryparams.single(request, "fieldValidation")
    if value in (None, "", STRICT):
        return
    if value in _FIELD_VALIDATIONS:
        raise _bad(
            "fieldValidation",
            f"{value!r} is not supported: this server validates every write strictly (an "
            "unknown or repeated field is refused, naming it); send Strict or leave it out",
        )
    raise _bad(
        "fieldValidation",
        f"must be one of {', '.join(repr(v) for v in _FIELD_VALIDATIONS)}, got {quote(value)}",
    )


def check_field_manager(request: web.Request) -> None:
    value = queryparams.single(request, "fieldManager")
    if value is None:
        return
    if len(value) > FIELD_MANAGER_MAX:
        raise _bad(
            "fieldManager",
            f"is {len(value)} characters long, over the limit of {FIELD_MANAGER_MAX}",
        )
    if not value.isprintable():
        raise _bad("fieldManager", f"has characters that are not printable: {quote(value)}")


def indented(response: web.StreamResponse) -> web.StreamResponse:
    """A JSON answer whose body is at hand, indented; anything else (a stream) as it is."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return response
    body = response.body
    if not isinstance(body, bytes | bytearray) or not body:
        return response
    response.body = json.dumps(json.loads(body), indent=2).encode() + b"\n"
    return response


@web.middleware
async def request_options_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Checks the three parameters of the resource routes and indents for ``pretty``."""
    if not request.path.startswith(_RESOURCE_ROUTES):
        return await handler(request)
    pretty = queryparams.flag(request, "pretty")
    if request.method in _WRITES:
        check_field_validation(request)
        check_field_manager(request)
    if not pretty:
        return await handler(request)
    try:
        return indented(await handler(request))
    except ApiError as exc:
        refused = status_response(exc)
        if exc.code == 413:
            refused.force_close()  # the announced body is never read
        return indented(refused)
