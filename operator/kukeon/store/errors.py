"""Typed registry errors: every failure the API server must map to an HTTP status.

Callers branch on the class, never on message text: ``NotFound`` 404, ``AlreadyExists``
409, ``Conflict`` 409 (stale resourceVersion, or a parent that still has children),
``Invalid`` 422 (``InvalidStoredDocument`` too: what etcd holds under the key is not a
valid resource; ``DocumentTooLarge``: over the document limit), ``Gone`` 410 (a watch
resumed from a compacted revision, or ``HistoryRewound``: from one etcd no longer
reached since a restore; relist),
``Unavailable`` 503 (etcd could not be reached, or a write's outcome is unknown;
``SpaceExceeded`` too: etcd is full and refuses writes),
``QuotaExceeded`` 403 (the realm's quota).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kukeon.api import FieldError, InvalidResource


class StoreError(Exception):
    """Base of every registry error; ``str()`` is a complete sentence for a user."""


class NotFound(StoreError):  # noqa: N818 (the API's names)
    """The resource (or the parent it needs) does not exist or is being deleted."""


class AlreadyExists(StoreError):  # noqa: N818 (the API's names)
    """A create found a resource under the same key."""


class Conflict(StoreError):  # noqa: N818 (the API's names)
    """A compare-and-swap lost: the caller's resourceVersion is stale."""


class ChildrenExist(Conflict):
    """A delete without ``cascade`` found children; ``children`` names them."""

    def __init__(self, message: str, *, children: Sequence[str]) -> None:
        super().__init__(message)
        self.children = list(children)


class QuotaExceeded(StoreError):  # noqa: N818 (the API's names)
    """A write would take its realm over ``spec.quota`` (or kukeond's default); ``causes``
    names the limit. The API answers 403, as Kubernetes does for an exceeded quota."""

    def __init__(self, message: str, *, causes: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.causes = list(causes)


class Invalid(StoreError):  # noqa: N818 (the API's names)
    """The input is not a valid resource (or selector); ``causes`` lists every field error."""

    def __init__(
        self,
        message: str,
        *,
        causes: Sequence[FieldError] = (),
        kind: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.causes = list(causes)
        self.kind = kind
        self.name = name

    @classmethod
    def from_invalid_resource(cls, error: InvalidResource) -> Invalid:
        invalid = cls(str(error), causes=error.causes, kind=error.kind, name=error.name)
        invalid.__cause__ = error
        return invalid


class DocumentTooLarge(Invalid):
    """The document a write would store is over ``MAX_DOCUMENT_BYTES``: refused before it
    reaches etcd. The same write is refused again until what it carries gets smaller."""


class InvalidStoredDocument(Invalid):
    """The document stored under a key is not a valid resource of the key's kind.

    Only something other than the registry can have written it (``etcdctl``, an old backup).
    Lists and watches skip such a document; reading it by name raises this (the API answers
    422), and deleting it removes the key.
    """

    def __init__(
        self, message: str, *, kind: str, name: str, key: str, revision: int, reason: str
    ) -> None:
        super().__init__(message, kind=kind, name=name)
        self.key = key
        self.revision = revision
        self.reason = reason


class Gone(StoreError):  # noqa: N818 (the API's names)
    """A watch asked for history etcd has compacted away; relist and watch again."""

    def __init__(self, message: str, *, compacted_revision: int) -> None:
        super().__init__(message)
        self.compacted_revision = compacted_revision


class HistoryRewound(Gone):
    """etcd's revision is behind one already seen: its store was restored from an older
    snapshot, or replaced by another at the same address. The history a watch followed is
    no more, and with it every version this process holds from after the restored
    revision: relist, and trust no revision kept from before (``revision`` is etcd's now,
    ``seen`` the one the watch had reached)."""

    def __init__(self, message: str, *, revision: int, seen: int) -> None:
        super().__init__(message, compacted_revision=revision)
        self.revision = revision
        self.seen = seen


class Unavailable(StoreError):  # noqa: N818 (the API's names)
    """etcd did not answer in time, or a write failed in a way that leaves its outcome unknown."""


class EtcdAway(Unavailable):
    """etcd is known unreachable: an earlier request spent its whole retry budget and
    nothing has answered since. Refused before anything was sent (so a write surely was
    not applied and may be sent again), instead of every request waiting out the budget.
    ``retry_after_seconds``: when to ask again (the API's ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class SpaceExceeded(Unavailable):
    """etcd refused a write because its backend is full (the ``NOSPACE`` alarm is raised).

    Not retried: nothing changes until room is freed and kukeond's space keeper (or etcd's
    operator) compacts, defragments and clears the alarm, so the caller is answered at once
    (503) instead of after the whole retry budget. The write was not applied.
    """
