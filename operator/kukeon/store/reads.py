"""Reads of the registry: one object by name, or every object of a kind under a scope."""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc

from kukeon.api import AnyResource, Kind

from .codec import label_of
from .decoding import load_document
from .errors import NotFound
from .keys import display_name, range_end
from .registrybase import RegistryBase
from .selectors import LabelSelector, parse_selector
from .txn import Stored

LIST_PAGE_SIZE = 500


class ResourceList(NamedTuple):
    items: list[AnyResource]
    resource_version: int


class KindState(NamedTuple):
    """What etcd holds of one kind now, told cheaply (``RegistryReads.kind_state``)."""

    revision: int
    """etcd's current revision."""
    keys: int
    """How many keys of the kind exist (invalid documents included)."""
    changed_since: bool
    """Whether one of them was written after the revision asked about."""


class RegistryReads(RegistryBase):
    """get and list: what etcd holds now, decoded as untrusted data."""

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        label = label_of(kind, key)
        raw_key = self._layout.key(kind, key).encode()
        stored = await self._read_one(raw_key, f"get {label}")
        if stored is None:
            raise NotFound(f"{label} not found")
        return self._codec.decode(kind, raw_key, stored.value, stored.mod_revision)

    async def kind_state(self, kind: Kind, since: int) -> KindState:
        """etcd's revision, the kind's key count, and whether a key of it changed after ``since``.

        One range of the kind's keys (keys only, at most one returned, nothing decoded): etcd
        counts the range before the ``min_mod_revision`` filter prunes it and the limit cuts
        it, so the count is every key's. A cache holding the kind as of ``since`` holds it
        as of ``revision`` too when no key was written after ``since`` and the count is the
        cache's (no key was deleted).
        """
        prefix = self._layout.kind_prefix(kind).encode()

        async def attempt() -> KindState:
            response = await self._range(
                prefix, range_end(prefix), limit=1, keys_only=True, min_mod_revision=since + 1
            )
            return KindState(response.header.revision, response.count, bool(response.kvs))

        return await self._retrier.run(
            attempt, what=f"read the state of {kind.value}", repeatable=True
        )

    async def list(
        self,
        kind: Kind,
        scope: tuple[str, ...] = (),
        *,
        label_selector: str | None = None,
    ) -> ResourceList:
        """Every ``kind`` under ``scope`` (all parents when empty), read at one revision."""
        selector = parse_selector(label_selector)
        prefix = self._layout.scope_prefix(kind, scope).encode()
        end = range_end(prefix)

        async def attempt() -> ResourceList:
            items: list[AnyResource] = []
            invalid: set[bytes] = set()
            revision = 0
            start = prefix
            while True:
                try:
                    response = await self._range(
                        start, end, revision=revision, limit=LIST_PAGE_SIZE
                    )
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.OUT_OF_RANGE and revision:
                        # Compacted between two pages: start over at a new snapshot.
                        items, invalid, revision, start = [], set(), 0, prefix
                        continue
                    raise
                if not revision:
                    revision = response.header.revision
                for kv in response.kvs:
                    item = self._listed(kind, kv, selector)
                    if isinstance(item, str):
                        invalid.add(kv.key)
                    elif item is not None:
                        items.append(item)
                if not response.more or not response.kvs:
                    if label_selector is None:
                        self._invalid.listed(prefix, end, invalid, revision)
                    return ResourceList(items, revision)
                start = response.kvs[-1].key + b"\0"

        what = f"list {kind.value} under {display_name(scope) or 'all parents'}"
        return await self._retrier.run(attempt, what=what, repeatable=True)

    def _listed(self, kind: Kind, kv: Any, selector: LabelSelector) -> AnyResource | str | None:
        """One listed document: the resource, None when the selector leaves it out, or why
        it is invalid (then it is skipped: one bad document must not fail the whole list)."""
        shared = self._codec.shared_version(kind, kv.key, kv.mod_revision)
        if shared is not None:
            if not selector.matches(shared.metadata.labels):
                return None
            self._documents.remember(kv.key, Stored(kv.value, kv.mod_revision))
            return shared
        loaded = load_document(kv.value)
        if isinstance(loaded, str):
            self._invalid.seen(kind, kv.key, kv.mod_revision, loaded)
            return loaded
        labels = loaded["metadata"].get("labels")
        # Labels of the wrong type are left to the parse, which says what is wrong.
        if (labels is None or isinstance(labels, dict)) and not selector.matches(labels):
            return None
        parsed = self._codec.parsed(kind, kv.key, loaded, kv.mod_revision)
        if not isinstance(parsed, str):
            self._documents.remember(kv.key, Stored(kv.value, kv.mod_revision))
            self._codec.share(kind, kv.key, kv.mod_revision, parsed)
        return parsed
