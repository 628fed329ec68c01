"""Objects as the server sent them, read by a client that may be older than the server."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from kukeon.api import AnyResource, InvalidResource, parse_resource

_FIELD_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def read_object(document: Any) -> AnyResource:
    """``document``'s model. Status fields this client does not know (a newer server's)
    are left out, as Kubernetes' clients ignore them: status is never written back by a
    spec write, so nothing is lost. An unknown spec or metadata field still raises
    InvalidResource, lest a read-modify-write drop it."""
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
