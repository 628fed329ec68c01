"""Room for the status kukeond writes, kept free at every write of a user's document.

The store keeps an object whole, status included, in at most ``MAX_DOCUMENT_BYTES``. A
spec, labels and annotations that nearly filled that left no room for the status kukeond
writes afterwards: every status write was refused (``DocumentTooLarge``), and the user saw
the object Pending with no reason, only kukeond's log saying why. So a spec write (create,
replace, patch, a profile run; ``kukectl apply`` sends these) of a kind whose status
kukeond writes is refused when its document would leave less than ``STATUS_RESERVE_BYTES``
for the status: a 422 naming the size and the limit, as the store's own refusal of a
document over its limit (kube-apiserver likewise refuses an object etcd would not take).

A CellSet's status also keeps its current template (``status.revisions``, with the
``kubernetes.io/change-cause`` annotation): the template is counted twice.

A document stored before this bound may be over it: it stays readable and deletable, and a
write that does not make it larger is taken (a label changed, a finalizer removed, the
spec shrunk), as a realm at its storage quota takes a write that does not grow.
"""

from __future__ import annotations

import json
from typing import Any

from kukeon.api import AnyResource, CellSet, Kind, to_document
from kukeon.api.cellset import CHANGE_CAUSE_ANNOTATION
from kukeon.apiserver.status import ApiError, Cause
from kukeon.apiserver.target import Target
from kukeon.store import MAX_DOCUMENT_BYTES, STATUS_RESERVE_BYTES

SPEC_MAX_BYTES = MAX_DOCUMENT_BYTES - STATUS_RESERVE_BYTES
"""What a document may weigh without its status (a CellSet's template counted twice)."""

_NO_STATUS_WRITTEN = frozenset({Kind.SECRET, Kind.CELL_PROFILE})
"""Kinds whose status kukeond never writes: a Secret's is the registry's, computed at the
same write (its keys' names, sizes and digests); a CellProfile's is empty."""


def _bytes(value: Any) -> int:
    """The bytes of ``value`` as compact JSON, as the store encodes it."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def needed_bytes(res: AnyResource) -> int:
    """What ``res`` takes of its document before kukeond writes its status: the document
    without its status, and for a CellSet what its status repeats of the spec."""
    document = to_document(res)
    document.pop("status", None)
    size = _bytes(document)
    if isinstance(res, CellSet):
        size += _bytes(res.template_document())
        size += len(res.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION, "").encode())
    return size


def check_status_room(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """Refuse a spec write of ``res`` (over ``current``) that leaves too little room for its
    status, unless it makes a document stored before the bound no larger."""
    if target.subresource is not None or target.kind in _NO_STATUS_WRITTEN:
        return
    size = needed_bytes(res)
    if size <= SPEC_MAX_BYTES or (current is not None and size <= needed_bytes(current)):
        return
    counted = " (its template counted twice)" if isinstance(res, CellSet) else ""
    why = (
        f"the document is {size} bytes without its status{counted}, over the "
        f"{SPEC_MAX_BYTES}-byte limit: {STATUS_RESERVE_BYTES} of the store's "
        f"{MAX_DOCUMENT_BYTES} bytes stay for the status kukeond writes; make the spec, "
        "labels or annotations smaller"
    )
    raise ApiError(
        422,
        f"{target.label()}: {why}",
        reason="Invalid",
        kind=target.kind.value,
        name=target.name or res.metadata.name,
        causes=[Cause("", why)],
    )


__all__ = ["SPEC_MAX_BYTES", "STATUS_RESERVE_BYTES", "check_status_room", "needed_bytes"]
