"""Query parameters, parsed strictly: a value the server cannot honour is a 400, never a 500.

``int("9" * 40)`` goes through Python fine and then overflows etcd's int64 revision;
``float("nan")`` becomes a watch deadline that never compares; ``watch=maybe`` used to
mean "no". Each parameter is read once here, checked against what it can mean, and the
error quotes at most ``QUOTE_LIMIT`` characters of what was sent.
"""

from __future__ import annotations

import math

from aiohttp import web

from kukeon.api.meta import INT64_MAX, check_dns_label, quote
from kukeon.apiserver.status import ApiError, Cause

TIMEOUT_SECONDS_MAX = 7 * 24 * 3600
"""The longest watch a client may ask for (a week); 0 or no value means no limit."""

_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"", "0", "false", "no"})


def _bad(name: str, message: str) -> ApiError:
    return ApiError(400, f"query parameter {name}: {message}", causes=[Cause(name, message)])


def single(request: web.Request, name: str) -> str | None:
    """The one value of ``name``, or None when absent; 400 when it is given twice."""
    values = request.query.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        raise _bad(name, f"given {len(values)} times, expected once")
    return values[0]


def node_name(request: web.Request, name: str = "node") -> str | None:
    """The node a request names (``?node=``), or None when absent or empty; 400 naming the
    parameter when it is no node's name (a DNS-1123 label), not a 404 "Node not found"
    that reads as a node missing from the fleet."""
    value = single(request, name)
    if not value:
        return None
    try:
        return check_dns_label(value)
    except ValueError as exc:
        raise _bad(name, f"not a node name: {exc}") from None


def flag(request: web.Request, name: str) -> bool:
    """A boolean parameter: true/false, 1/0, yes/no (any case); absent is false."""
    value = single(request, name)
    if value is None:
        return False
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad(name, f"must be true or false, got {quote(value)}")


def resource_version(request: web.Request, name: str = "resourceVersion") -> int | None:
    """A revision: a non-negative decimal int64, or None when absent or empty."""
    value = single(request, name)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise _bad(name, f"must be a non-negative decimal integer, got {quote(value)}")
    number = int(value)
    if number > INT64_MAX:
        raise _bad(name, f"must be at most {INT64_MAX}, got {quote(value)}")
    return number


NOT_OLDER_THAN = "NotOlderThan"
EXACT = "Exact"


def list_resource_version(request: web.Request) -> int | None:
    """A list's ``resourceVersion``, with ``resourceVersionMatch`` checked as Kubernetes does.

    Every list is read at least at etcd's revision when it arrived, so the only semantics
    this server has are ``NotOlderThan`` (the default); ``Exact`` (a list as of an older
    revision) is refused rather than answered with newer data.
    """
    requested = resource_version(request)
    match = single(request, "resourceVersionMatch")
    if match is None:
        return requested
    if match == EXACT:
        raise _bad(
            "resourceVersionMatch",
            f"{EXACT!r} is not supported: a list is read at the latest revision "
            f"({NOT_OLDER_THAN!r} semantics)",
        )
    if match != NOT_OLDER_THAN:
        raise _bad(
            "resourceVersionMatch", f"must be {NOT_OLDER_THAN!r} or {EXACT!r}, got {quote(match)}"
        )
    if single(request, "resourceVersion") in (None, ""):
        raise _bad("resourceVersionMatch", "is forbidden unless resourceVersion is provided")
    return requested


def watch_resource_version(request: web.Request) -> int | None:
    """A watch's ``resourceVersion``; ``resourceVersionMatch`` is refused, as Kubernetes
    refuses it on a watch without ``sendInitialEvents`` (which this server does not have)."""
    if single(request, "resourceVersionMatch") is not None:
        raise _bad("resourceVersionMatch", "is forbidden for a watch")
    return resource_version(request)


def timeout_seconds(request: web.Request, name: str = "timeoutSeconds") -> float | None:
    """A finite number of seconds in [0, a week]; None (no limit) when absent, empty or 0."""
    value = single(request, name)
    if value is None or value == "":
        return None
    try:
        number = float(value) if len(value) <= 32 else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not 0 <= number <= TIMEOUT_SECONDS_MAX:
        raise _bad(
            name, f"must be a number of seconds from 0 to {TIMEOUT_SECONDS_MAX}, got {quote(value)}"
        )
    return number or None


def dry_run(request: web.Request) -> bool:
    """``dryRun=All`` (the only value Kubernetes defines); absent means a real write."""
    values = request.query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise _bad("dryRun", f"must be 'All', got {quote(value)}")
    return bool(values)


def whole_list_options(request: web.Request, *, watch: bool) -> None:
    """The paging and initial-events parameters, for a server that answers every list whole.

    ``limit`` may be ignored, as Kubernetes allows (the whole list, no continue token), but
    must be a count; a ``continue`` token was never issued here (a forged one, or another
    server's, would have restarted the list from its beginning unseen), and
    ``sendInitialEvents`` asks for a watch protocol this server does not speak (a watch
    without ``resourceVersion`` starts with the existing objects already): both are 400s,
    as is ``allowWatchBookmarks`` that is no boolean.
    """
    limit = single(request, "limit")
    if limit not in (None, "") and not (
        limit.isascii() and limit.isdigit() and len(limit) <= 19 and int(limit) <= INT64_MAX
    ):
        raise _bad("limit", f"must be a non-negative decimal integer, got {quote(limit)}")
    if single(request, "continue"):
        raise _bad(
            "continue",
            "this server answers every list whole and issues no continue token; list again "
            "without it",
        )
    if single(request, "sendInitialEvents") is not None:
        which = (
            "a watch without resourceVersion starts with every object"
            if watch
            else ("is forbidden for a list")
        )
        raise _bad("sendInitialEvents", f"is not supported ({which})")
    flag(request, "allowWatchBookmarks")
