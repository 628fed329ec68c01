"""The exact bytes of documents at the revision the registry last saw them (by key)."""

from __future__ import annotations

import collections

from .txn import Stored


class DocumentCache:
    """The exact bytes of documents at the revision this registry last saw them.

    A revision's bytes never change in etcd, so an update whose resourceVersion matches
    the cached revision can skip the read: the compare in the write still decides.
    Bounded by total size; the oldest entries go first.
    """

    def __init__(self, max_bytes: int) -> None:
        self._entries: collections.OrderedDict[bytes, Stored] = collections.OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes

    def remember(self, key: bytes, stored: Stored) -> Stored:
        self.forget(key)
        self._entries[key] = stored
        self._bytes += len(stored.value)
        while self._bytes > self._max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.value)
        return stored

    def at(self, key: bytes, revision: int) -> Stored | None:
        stored = self._entries.get(key)
        return stored if stored is not None and stored.mod_revision == revision else None

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def forget(self, key: bytes) -> None:
        stored = self._entries.pop(key, None)
        if stored is not None:
            self._bytes -= len(stored.value)
