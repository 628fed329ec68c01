"""JSON merge patch (RFC 7386), the PATCH body format the API accepts.

A merge patch is the desired shape of the changed part of a document: objects merge
recursively, ``null`` deletes a member, anything else (arrays included) replaces. It is
the simplest patch format that a human can write by hand with curl, which is why it is
the one kukeon supports (``Content-Type: application/merge-patch+json``).
"""

from __future__ import annotations

import copy
from typing import Any

MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Return ``target`` with ``patch`` applied; neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = apply_merge_patch(result.get(name), value)
    return result


def create_merge_patch(source: Any, target: Any) -> Any:
    """The smallest merge patch turning ``source`` into ``target`` (inverse of apply)."""
    if not isinstance(source, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    patch: dict[str, Any] = {}
    for name in source:
        if name not in target:
            patch[name] = None
    for name, value in target.items():
        if name not in source:
            patch[name] = copy.deepcopy(value)
        elif source[name] != value:
            patch[name] = create_merge_patch(source[name], value)
    return patch
