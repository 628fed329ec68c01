"""What a viewer does not see of a Secret: its values' digests.

A Secret's answers carry, per key, its size and the sha256 of its value (``status.keys``).
A viewer reads every realm without being able to use a Secret, and the digest of a short
value (a PIN, a dictionary word) gives the value away offline. So a viewer's get, list and
watch of Secrets show the keys and sizes without ``sha256``, as Kubernetes' ``view`` role
shows no Secret at all. Editors and admins keep it: they may run a cell that reads the
values anyway, and ``kukectl apply`` compares values by it.
"""

from __future__ import annotations

import json
from typing import Any

from kukeon.api import Kind
from kukeon.apiserver.auth import Principal, Role

DIGEST_FIELD = "sha256"


def hides_digests(principal: Principal, kind: Kind) -> bool:
    """Whether this caller's answers about ``kind`` leave the values' digests out."""
    return principal.role == Role.VIEWER and kind == Kind.SECRET


def without_digests(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (a Secret's) with its keys' digests removed, in place."""
    status = document.get("status")
    keys = status.get("keys") if isinstance(status, dict) else None
    for entry in keys if isinstance(keys, list) else ():
        if isinstance(entry, dict):
            entry.pop(DIGEST_FIELD, None)
    return document


def body_without_digests(body: bytes) -> bytes:
    """A cached Secret's JSON body with its digests removed."""
    return _compact(without_digests(json.loads(body)))


def event_without_digests(line: bytes) -> bytes:
    """A watch event's NDJSON line (``{type, object}``) with the object's digests removed."""
    event = json.loads(line)
    if isinstance(event.get("object"), dict):
        without_digests(event["object"])
    return _compact(event) + b"\n"


def _compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
