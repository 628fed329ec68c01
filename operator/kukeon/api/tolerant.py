"""Documents written by another version of kukeon: status fields this one does not know.

A newer kukeond adds status fields (what it observed); an older one, or kukectl, reading
the same document must not take the whole object for invalid, or a rolling upgrade of a
fleet (or a rollback) would hide every cell from the nodes not yet upgraded. Unknown
*status* fields are left out, as Kubernetes prunes unknown fields: status is observed
state, rewritten whole by the next status write, so nothing a user wrote is lost. Unknown
spec or metadata fields still make the document invalid: a read-modify-write would drop
them. Unknown *values* of status enums need no pass here: the fields keep them as written
(``api.observed``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from .kinds import AnyResource, parse_resource
from .validation import InvalidResource

_FIELD_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_tolerating_status(document: Any) -> AnyResource:
    """``parse_resource``, with the status fields this version does not know left out
    (``document`` itself is not changed); InvalidResource for anything else."""
    try:
        return parse_resource(document)
    except InvalidResource as exc:
        unknown = [cause.field for cause in exc.causes if cause.message.startswith("unknown")]
        if not (
            isinstance(document, dict)
            and len(unknown) == len(exc.causes)
            and all(field.startswith("status.") for field in unknown)
        ):
            raise
    return parse_resource(without_fields(document, unknown))


def without_fields(document: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """A deep copy of ``document`` without the fields at ``fields`` (``a.b[0].c`` paths)."""
    trimmed: dict[str, Any] = copy.deepcopy(document)
    for field in fields:
        steps: list[str | int] = [
            int(index) if index else name for name, index in _FIELD_STEP.findall(field)
        ]
        parent: Any = trimmed
        for step in steps[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if isinstance(parent, dict):
            parent.pop(steps[-1], None)
    return trimmed
