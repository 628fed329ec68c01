"""Reading stored documents back: etcd's bytes are untrusted input too.

Every document is written through ``Registry``, which validates it first; yet anyone
holding etcd's client certificate (an operator with ``etcdctl``, a restore of an old
backup, another program sharing the prefix) can put anything under a key. One such
document must never stop a list or a watch, or a controller would stop converging every
other object of the kind. So decoding answers "a resource, or why not" instead of
raising, and the registry skips what does not decode (see ``Registry.list``/``watch``).

A stored document is valid when it is a JSON object with a ``metadata`` object, passes
``kukeon.api.parse_resource``, is of the kind its key says, and names the same parents
and name as its key (a Cell under ``cells/r1/s1/st1/c1`` whose spec says realm ``r2``
is refused: the registry, the controllers and the host paths would disagree on it).

``InvalidDocuments`` remembers the invalid keys this process has read, to log each
(key, revision) once and to report how many there are now
(``kukeon_registry_invalid_documents{kind}``); it is read from the scrape thread, hence
the lock. Decoding stays cheap for valid documents: one parse, as before.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from kukeon.api import Kind, Resource, key_of
from kukeon.api.tolerant import parse_tolerating_status

from .keys import display_name

log = logging.getLogger(__name__)

AnyResource = Resource[Any, Any]

_HISTORY = 4096
"""Invalid (key, revision) pairs remembered for logging once; older ones may log again."""
_REASON_CHARS = 300
"""A reason quotes at most this much of the document (a megabyte of junk stays out of logs)."""


def _short(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "..."


MAX_DOCUMENT_BYTES = 1024 * 1024
"""The most the registry writes of one document (``codec`` refuses more)."""
STATUS_RESERVE_BYTES = 64 * 1024
"""Room a document keeps for the status kukeond writes (``apiserver.statusroom`` refuses a
user's write that leaves less; a CellSet's kept templates leave it too): two of
statusbound's largest messages (8192 characters, at most 32 KiB of UTF-8 each), or, cut to
its tight bound (256 characters), a message for each of some hundred entries."""


def load_document(value: bytes) -> dict[str, Any] | str:
    """The JSON object stored in ``value`` with a ``metadata`` object, or why it is not one."""
    if len(value) > MAX_DOCUMENT_BYTES:
        # etcd takes a put of up to 1.5 MiB: written around the API. No write of it would
        # be taken (its status included), so a controller could only retry it for good.
        return (
            f"the stored document is {len(value)} bytes, over the {MAX_DOCUMENT_BYTES}-byte "
            "limit of every document"
        )
    try:
        document = json.loads(value)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        return _short(f"not JSON ({type(error).__name__}: {error})")
    if not isinstance(document, dict):
        return f"not a JSON object (a JSON {type(document).__name__})"
    if not isinstance(document.get("metadata"), dict):
        return "no metadata object"
    return document


def parse_document(
    document: dict[str, Any], *, kind: Kind, key: Sequence[str], revision: int
) -> AnyResource | str:
    """The resource in ``document`` stored under ``key`` of ``kind``, or why it is not one.

    ``document`` is changed in place (its ``resourceVersion`` is set to ``revision``).
    """
    document["metadata"]["resourceVersion"] = str(revision)
    try:
        # Another version's status fields are left out (``api.tolerant``): a rolling
        # upgrade or a rollback must not hide the objects a newer node wrote.
        parsed = parse_tolerating_status(document)
    except Exception as error:  # any failure to parse stored data means: invalid
        return _short(f"not a valid resource: {error}")
    if parsed.kind != kind.value:
        return f"holds a {parsed.kind}, not a {kind.value}"
    named = key_of(parsed)
    if tuple(named) != tuple(key):
        return (
            f"names {display_name(named)!r} but is stored under {display_name(key)!r} "
            "(the key and the document must agree)"
        )
    return parsed


class InvalidDocuments:
    """The keys whose last document read did not decode, and the versions seen invalid."""

    def __init__(self, *, history: int = _HISTORY) -> None:
        self._lock = threading.Lock()
        self._keys: dict[bytes, tuple[Kind, int, str]] = {}
        """Invalid now (as last read): key -> kind, revision and why of the invalid document."""
        self._history: collections.OrderedDict[tuple[bytes, int], None] = collections.OrderedDict()
        """(key, revision) of every invalid version seen, newest last, bounded: each one
        is logged once, and a watch tells from it whether a key's previous version was
        ever delivered."""
        self._settled: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        """Key -> the revision at which a key that was invalid was found valid again or
        deleted, bounded: a read that started earlier and sees the older, invalid version
        (a list racing the delete) must not count it again."""
        self._history_size = history

    def _settle(self, raw_key: bytes, revision: int) -> None:
        if self._settled.get(raw_key, -1) < revision:
            self._settled[raw_key] = revision
            self._settled.move_to_end(raw_key)
            while len(self._settled) > self._history_size:
                self._settled.popitem(last=False)

    def seen(self, kind: Kind, raw_key: bytes, revision: int, reason: str) -> None:
        """Remember an invalid document; log it unless this version was already logged."""
        with self._lock:
            current = self._keys.get(raw_key)
            stale = self._settled.get(raw_key, -1) >= revision
            if not stale and (current is None or current[1] <= revision):
                self._keys[raw_key] = (kind, revision, reason)
            first = (raw_key, revision) not in self._history
            if first:
                self._history[(raw_key, revision)] = None
                while len(self._history) > self._history_size:
                    self._history.popitem(last=False)
        if first:
            log.warning(
                "skipping the invalid %s document at %s (revision %d): %s; lists and "
                "watches ignore it until it is deleted or replaced by a valid one",
                kind.value,
                raw_key.decode(errors="replace"),
                revision,
                reason,
                extra={"kind": kind.value, "key": raw_key.decode(errors="replace")},
            )

    def clear(self) -> None:
        """Forget everything (etcd's history went back: the revisions seen name versions
        the restored store does not have); the next lists find the invalid keys again."""
        with self._lock:
            self._keys.clear()
            self._history.clear()
            self._settled.clear()

    def was_invalid(self, raw_key: bytes, revision: int) -> bool:
        """Whether the version of ``raw_key`` at ``revision`` was seen invalid."""
        with self._lock:
            return (raw_key, revision) in self._history

    def valid(self, raw_key: bytes, revision: int) -> None:
        """The key decoded at ``revision`` (or was deleted then): no longer invalid."""
        if not self._keys:  # the usual case: nothing to forget, no lock taken
            return
        with self._lock:
            current = self._keys.get(raw_key)
            if current is not None and current[1] <= revision:
                del self._keys[raw_key]
                self._settle(raw_key, revision)

    def listed(self, start: bytes, end: bytes, invalid: set[bytes], revision: int) -> None:
        """A full list of ``[start, end)`` at ``revision`` found exactly ``invalid`` invalid."""
        with self._lock:
            for raw_key, (_, seen_at, _) in list(self._keys.items()):
                if start <= raw_key < end and raw_key not in invalid and seen_at <= revision:
                    del self._keys[raw_key]
                    self._settle(raw_key, revision)

    def keys_within(self, start: bytes, end: bytes) -> list[bytes]:
        """The keys of ``[start, end)`` that are invalid now, sorted."""
        if not self._keys:
            return []
        with self._lock:
            return sorted(key for key in self._keys if start <= key < end)

    def reasons_within(self, start: bytes, end: bytes) -> list[tuple[bytes, int, str]]:
        """(key, revision, why) of the keys of ``[start, end)`` that are invalid now."""
        if not self._keys:
            return []
        with self._lock:
            found = [(key, rev, why) for key, (_, rev, why) in self._keys.items()]
        return sorted(item for item in found if start <= item[0] < end)

    def counts(self) -> dict[Kind, int]:
        """Invalid keys by kind now (every kind present, 0 when none)."""
        with self._lock:
            kinds = [kind for kind, _, _ in self._keys.values()]
        return {kind: kinds.count(kind) for kind in Kind}
