"""Watches of the registry: every change of a kind under a scope, resumed across failures.

The stream and its resumption are ``etcdwatch``'s (shared with the Events); here each
etcd event becomes what a watcher of the registry sees. Invalid documents do not exist
for a watcher, as for a list (``_watch_event``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal, NamedTuple

from aetcd import rpc

from kukeon.api import AnyResource, Kind

from .errors import Gone, HistoryRewound
from .etcdwatch import resumable_watch
from .registrybase import RegistryBase
from .txn import Stored

log = logging.getLogger(__name__)


class WatchEvent(NamedTuple):
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: AnyResource
    revision: int
    prior: AnyResource | None = None
    """A MODIFIED event's version before, as selectors see it: what a selective watch
    compares to say an object stopped or started matching. The one this process holds
    decoded already (no decode is paid for it); for a kind with sealed values, which is
    never held, read again from etcd's previous value with those values left sealed
    (``DocumentCodec.prior_version``). None when not held (a version read by no one here)."""


class RegistryWatch(RegistryBase):
    """watch: the changes after a revision, as the registry's own events."""

    async def watch(
        self,
        kind: Kind,
        scope: tuple[str, ...] = (),
        *,
        resource_version: int,
    ) -> AsyncIterator[WatchEvent]:
        """Every change of ``kind`` under ``scope`` with revision > ``resource_version``.

        Survives a killed member or a leader change: the stream is opened again from the
        revision after the last one delivered, so nothing is lost or repeated. Raises
        ``Gone`` when etcd no longer has that history (relist, then watch from the list's
        resourceVersion) and ``Unavailable`` when etcd stays unreachable for the retry budget;
        ``HistoryRewound`` (a ``Gone``) when etcd went back to an older revision (restored),
        after forgetting what this registry kept by revision.
        """

        def decode(response: Any) -> list[WatchEvent]:
            decoded = [self._watch_event(kind, event) for event in response.events]
            return [event for event in decoded if event is not None]

        events = resumable_watch(
            self._client,
            self._config,
            self._layout.scope_prefix(kind, scope).encode(),
            after=resource_version,
            what=kind.value,
            decode=decode,
            revision_of=lambda event: event.revision,
            closed=lambda: self._closed,
        )
        async with contextlib.aclosing(events):  # the stream ends with its reader
            try:
                async for event in events:
                    yield event
            except HistoryRewound:
                self.forget_history()
                raise

    def _watch_event(self, kind: Kind, event: Any) -> WatchEvent | None:
        """The event as a watcher sees it; None for a change it must not see.

        Invalid documents do not exist for a watcher (as for a list): an object whose new
        version is invalid is DELETED (with its last valid version), one whose invalid
        version becomes valid is ADDED, and changes between invalid versions are skipped.
        """
        kv = event.kv
        previous = event.prev_kv if event.HasField("prev_kv") else None
        if event.type == rpc.Event.EventType.DELETE:
            if previous is None:
                raise Gone(
                    f"the last state of deleted {kv.key.decode()!r} is compacted; list again",
                    compacted_revision=kv.mod_revision,
                )
            self._documents.forget(kv.key)
            was_invalid = self._invalid.was_invalid(kv.key, previous.mod_revision)
            last = (
                None if was_invalid else self._codec.last_version(kind, previous, kv.mod_revision)
            )
            self._codec.shared.forget(kv.key, kv.mod_revision)
            self._invalid.valid(kv.key, kv.mod_revision)
            if last is None:
                return None  # never delivered: nothing to delete for the watcher
            return WatchEvent("DELETED", last, kv.mod_revision)
        created = kv.create_revision == kv.mod_revision
        was_invalid = previous is not None and self._invalid.was_invalid(
            kv.key, previous.mod_revision
        )
        # Before the new version replaces it among the shared decodes.
        prior = (
            None
            if previous is None or created or was_invalid
            else self._codec.prior_version(kind, previous)
        )
        current = self._codec.decoded_shared(kind, kv.key, kv.value, kv.mod_revision)
        if isinstance(current, str):
            self._documents.forget(kv.key)
            if created or previous is None or was_invalid:
                return None
            # The watcher holds the previous version: to it the object is gone now.
            last = self._codec.last_version(kind, previous, kv.mod_revision)
            if last is None:
                return None
            return WatchEvent("DELETED", last, kv.mod_revision)
        # Controllers update what they were just told about: spare them the read.
        self._documents.remember(kv.key, Stored(kv.value, kv.mod_revision))
        kind_of_change: Literal["ADDED", "MODIFIED"] = (
            "ADDED" if created or was_invalid else "MODIFIED"
        )
        return WatchEvent(kind_of_change, current, kv.mod_revision, prior)
