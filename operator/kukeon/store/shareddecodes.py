"""One decoded object per stored version, shared by every watch and list that reads it.

In kukeond several loops follow the same kind (the controllers' watch, the API server's
watch cache, the followers of cells): each event reached each of them as bytes and was
decoded -- JSON, then the pydantic model -- once per loop, and each kept its own copy of
the newest version of every document. Here the registry remembers, per key, the object it
last decoded and that version's revision: a watch or list that meets the same revision
again is handed the same object, so a version is decoded once and held once. A version
this process wrote itself is kept from the write (``DocumentCodec.written``): the model it
validated, so its own watch does not decode those bytes at all.

Sharing is safe because nothing modifies an object read from the store: every change is
made on a copy (``model_copy``), as ``framework.cache`` and ``apiserver.watchcache``
already require of their readers. Kinds whose stored documents carry sealed values
(Secrets, a Realm's registry passwords) are never kept here: their opened values stay
with the one reader that asked. A deleted key is forgotten when its watch says so; the
number of keys kept is bounded (the oldest go first), so a process that lists without
watching cannot grow it past that.
"""

from __future__ import annotations

from collections import OrderedDict

from kukeon.api import AnyResource

MAX_KEYS = 20_000
"""Keys remembered at most; beyond it a version may be decoded again (as before)."""
MAX_REPLACED = 256
"""Versions just replaced by a newer one, kept a little longer: every watch of the process
meets a change, and one that comes after another has already taken the new version still
finds the one before (a selective watch compares it: ``WatchEvent.prior``)."""


class SharedDecodes:
    """The newest decoded version of each key, by its revision."""

    def __init__(self, max_keys: int = MAX_KEYS, max_replaced: int = MAX_REPLACED) -> None:
        self._entries: OrderedDict[bytes, tuple[int, AnyResource]] = OrderedDict()
        self._replaced: OrderedDict[bytes, tuple[int, AnyResource]] = OrderedDict()
        self._max_replaced = max_replaced
        self._forgotten: OrderedDict[bytes, int] = OrderedDict()
        """The revision each key was last forgotten at (deleted, or a version that does not
        decode): an older version met later (a list read before the delete, a write's
        result handled after it) is not kept again. Bounded like the entries."""
        self._max_keys = max_keys

    def get(self, raw_key: bytes, revision: int) -> AnyResource | None:
        """The object decoded from ``raw_key`` at ``revision``, if it is the one kept."""
        entry = self._entries.get(raw_key)
        if entry is not None and entry[0] == revision:
            return entry[1]
        replaced = self._replaced.get(raw_key)
        if replaced is not None and replaced[0] == revision:
            return replaced[1]
        return None

    def keep(self, raw_key: bytes, revision: int, res: AnyResource) -> None:
        """Remember ``res`` as ``raw_key``'s version at ``revision`` (an older one never
        replaces a newer: a list can race the watch)."""
        entry = self._entries.get(raw_key)
        if entry is not None and entry[0] > revision:
            return
        forgotten = self._forgotten.get(raw_key)
        if forgotten is not None:
            if revision <= forgotten:
                return
            del self._forgotten[raw_key]  # made again since
        if entry is not None and entry[0] < revision:
            self._replaced[raw_key] = entry
            self._replaced.move_to_end(raw_key)
            while len(self._replaced) > self._max_replaced:
                self._replaced.popitem(last=False)
        self._entries[raw_key] = (revision, res)
        self._entries.move_to_end(raw_key)
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)

    def forget(self, raw_key: bytes, revision: int) -> None:
        """``raw_key`` is gone (or undecodable) as of ``revision``: nothing of it kept, nor
        any version up to that one later."""
        self._entries.pop(raw_key, None)
        self._replaced.pop(raw_key, None)
        self._forgotten[raw_key] = max(revision, self._forgotten.get(raw_key, 0))
        self._forgotten.move_to_end(raw_key)
        while len(self._forgotten) > self._max_keys:
            self._forgotten.popitem(last=False)

    def clear(self) -> None:
        """Forget every version (etcd's history went back: a revision may now name another
        version of the same key)."""
        self._entries.clear()
        self._replaced.clear()
        self._forgotten.clear()

    def __len__(self) -> int:
        return len(self._entries)
