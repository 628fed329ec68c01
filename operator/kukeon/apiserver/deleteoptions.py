"""A DELETE's options: its query and its DeleteOptions body, read as one.

client-go sends a delete's options as a ``DeleteOptions`` body, not as query parameters
(``kubectl delete --dry-run=server`` sends ``{"dryRun": ["All"]}``; its garbage collector
sends ``preconditions``). Every field of that body is honoured or refused: a ``dryRun``
that was only checked and then ignored deleted the object for real, and ``preconditions``
ignored deleted whatever object held the name. A field this server does not know is a 400
naming it, not a delete that silently does less than was asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from kukeon.api.cell import TERMINATION_GRACE_MAX
from kukeon.api.meta import quote
from kukeon.apiserver import queryparams
from kukeon.apiserver.request import read_body
from kukeon.apiserver.status import ApiError, Cause

ORPHAN: Literal["Orphan"] = "Orphan"

_KNOWN = frozenset(
    {
        "kind",
        "apiVersion",
        "dryRun",
        "gracePeriodSeconds",
        "preconditions",
        "propagationPolicy",
        "orphanDependents",
    }
)
_API_VERSIONS = frozenset({"v1", "meta.k8s.io/v1", "kukeon.io/v1beta1", "v1beta1"})


@dataclass(frozen=True)
class Preconditions:
    """What the object to delete must still be (Kubernetes' ``DeleteOptions.preconditions``)."""

    uid: str | None = None
    resource_version: str | None = None


@dataclass(frozen=True)
class DeleteOptions:
    policy: bool | Literal["Orphan"]
    """True: cascade (Foreground or Background); ``Orphan``; False: refused with children."""
    grace: int | None
    dry_run: bool
    preconditions: Preconditions | None


def _bad(field: str, why: str, got: object = None) -> ApiError:
    shown = "" if got is None else f", got {quote(str(got)[:40])}"
    return ApiError(400, f"DeleteOptions {field}: {why}{shown}", causes=[Cause(field, why)])


def grace_seconds(value: object, *, text: bool = True) -> int | None:
    """``gracePeriodSeconds`` (a query's ``text`` or a body's number): 0 to an hour, or None."""
    if value is None or (text and value == ""):
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (
        text and isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5
    ):
        number = int(value)
    if number is None or not 0 <= number <= TERMINATION_GRACE_MAX:
        why = f"must be a whole number of seconds from 0 to {TERMINATION_GRACE_MAX}"
        raise ApiError(
            400,
            f"gracePeriodSeconds: {why}, got {quote(str(value)[:40])}",
            causes=[Cause("gracePeriodSeconds", why)],
        )
    return number


def _policy(value: object) -> bool | Literal["Orphan"]:
    if value in ("Foreground", "Background"):
        return True
    if value == ORPHAN:
        return ORPHAN
    raise ApiError(
        400,
        f"propagationPolicy {quote(str(value))} is not supported: use Foreground or Background "
        "(children are deleted), Orphan (a CellSet's cells stay) or leave it out "
        "(refused while children exist)",
        causes=[Cause("propagationPolicy", "must be Foreground, Background or Orphan")],
    )


def _preconditions(value: object) -> Preconditions | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("preconditions", "must be an object {uid, resourceVersion}", value)
    unknown = sorted(set(value) - {"uid", "resourceVersion"})
    if unknown:
        raise _bad(f"preconditions.{unknown[0]}", "unknown field (uid, resourceVersion)")
    found: dict[str, str | None] = {}
    for name in ("uid", "resourceVersion"):
        given = value.get(name)
        if given is not None and not isinstance(given, str):
            raise _bad(f"preconditions.{name}", "must be a string", given)
        found[name] = given or None
    return Preconditions(found["uid"], found["resourceVersion"])


def _body_policy(body: dict[str, Any]) -> str | None:
    """The body's ``propagationPolicy``, or its older ``orphanDependents`` as one (true:
    Orphan, false: the dependents are deleted, Background), never both (Kubernetes' rule)."""
    orphan = body.get("orphanDependents")
    policy = body.get("propagationPolicy")
    if orphan is not None:
        if not isinstance(orphan, bool):
            raise _bad("orphanDependents", "must be true or false", orphan)
        if policy is not None:
            raise _bad("orphanDependents", "cannot be given with propagationPolicy")
        return ORPHAN if orphan else "Background"
    if policy is not None and not isinstance(policy, str):
        _policy(policy)  # the 400 naming it
    return policy


def _check_body(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "a DELETE body must be a DeleteOptions object")
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise _bad(unknown[0], f"unknown field (known: {', '.join(sorted(_KNOWN))})")
    if body.get("kind") not in (None, "DeleteOptions"):
        raise _bad("kind", "must be DeleteOptions", body["kind"])
    if body.get("apiVersion") not in (None, *_API_VERSIONS):
        raise _bad("apiVersion", "must be v1 or meta.k8s.io/v1", body["apiVersion"])
    if body.get("dryRun") not in (None, [], ["All"]):
        raise _bad("dryRun", "must be ['All'] or []", body["dryRun"])
    return body


async def delete_options(request: web.Request, max_body_bytes: int) -> DeleteOptions:
    """The options of a DELETE; a query parameter and the body's field of the same option
    must agree when both are given."""
    policy = queryparams.single(request, "propagationPolicy")
    grace = grace_seconds(queryparams.single(request, "gracePeriodSeconds"))
    dry_run = queryparams.dry_run(request)
    preconditions = None
    if request.can_read_body:
        body = _check_body(await read_body(request, max_body_bytes))
        body_policy = _body_policy(body)
        if policy is not None and body_policy is not None and body_policy != policy:
            raise _bad("propagationPolicy", "the query and the body ask for different policies")
        policy = policy if policy is not None else body_policy
        body_grace = grace_seconds(body.get("gracePeriodSeconds"), text=False)
        if grace is not None and body_grace is not None and body_grace != grace:
            raise _bad("gracePeriodSeconds", "the query and the body give different graces")
        grace = grace if grace is not None else body_grace
        dry_run = dry_run or body.get("dryRun") == ["All"]
        preconditions = _preconditions(body.get("preconditions"))
    cascade = queryparams.flag(request, "cascade") if policy is None else _policy(policy)
    return DeleteOptions(cascade, grace, dry_run, preconditions)
