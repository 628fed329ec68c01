"""The query parameters kube-apiserver takes on every resource route: ``pretty``, and on a
write ``fieldValidation`` and ``fieldManager``; each has its effect or is a 400 naming it.

- ``pretty=true`` indents the JSON answer (and a Status error) as kube-apiserver does;
  watch streams stay one compact event per line. A value that is no boolean is a 400.
- ``fieldValidation`` (``Strict``, the default, ``Warn``, ``Ignore``): checked here on
  every write, carried out by the write handlers (``fieldvalidation``); the warnings they
  record are written here as ``Warning`` headers, on a refusal's Status too.
- ``fieldManager``: checked as kube-apiserver checks it (at most 128 printable
  characters); kukeon keeps no ``managedFields``, so a valid one has nothing to record.

A read without a query string has none of them: it goes straight on (most requests).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from kukeon.api.meta import quote
from kukeon.apiserver import queryparams
from kukeon.apiserver.fieldvalidation import WARNINGS_KEY, add_warnings, level_of
from kukeon.apiserver.status import ApiError, Cause, status_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FIELD_MANAGER_MAX = 128
"""kube-apiserver's limit on ``fieldManager`` (``ValidateFieldManager``)."""
_WRITES = frozenset({"POST", "PUT", "PATCH"})
_RESOURCE_ROUTES = "/apis/"


def _bad(name: str, message: str) -> ApiError:
    return ApiError(400, f"query parameter {name}: {message}", causes=[Cause(name, message)])


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
    """Checks the three parameters of the resource routes, indents for ``pretty`` and
    writes a write's warnings."""
    if not request.path.startswith(_RESOURCE_ROUTES):
        return await handler(request)
    write = request.method in _WRITES
    if not write and not request.query_string:
        return await handler(request)  # a read with no parameter: nothing to check or indent
    pretty = queryparams.flag(request, "pretty")
    if write:
        level_of(request)
        check_field_manager(request)
    elif not pretty:
        return await handler(request)
    try:
        response = await handler(request)
    except ApiError as exc:
        if not pretty and WARNINGS_KEY not in request:
            raise
        response = status_response(exc)
        if exc.code == 413:
            response.force_close()  # the announced body is never read
    if write:
        add_warnings(request, response)
    return indented(response) if pretty else response
