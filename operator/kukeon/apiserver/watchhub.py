"""Watch fan-out: one registry watch per (kind, scope), shared by every HTTP watcher of it.

Without sharing, each HTTP watcher holds its own etcd watch stream and encodes every
event itself: 100 dashboards watching cells cost 100 etcd streams and 100 JSON encodings
per change. A ``Feed`` runs one ``registry.watch`` and encodes each event once; watchers
subscribe to it with the revision they want to resume after.

A feed keeps its recent events (``history``), so a watcher asking to resume after revision
S joins a running feed when the feed still covers S (every event after S was either kept
or is yet to come); otherwise it gets a private feed of its own starting at S -- which is
also how a compacted S is refused (the registry raises ``Gone``). A watcher whose queue
fills up (a client that stopped reading) is cut off with a 410-style error so it relists,
instead of holding the feed back for everyone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Callable
from typing import NamedTuple

from kukeon.api import AnyResource, Kind, to_document
from kukeon.apiserver.protocols import RegistryApi
from kukeon.cancelling import wait_ended
from kukeon.store import Gone

log = logging.getLogger(__name__)

HISTORY = 1024
QUEUE_SIZE = 4096


class EncodedEvent(NamedTuple):
    """A watch event, with its NDJSON line encoded once for every watcher."""

    type: str
    object: AnyResource
    revision: int
    line: bytes
    prior: AnyResource | None = None
    """A MODIFIED event's version before, as selectors see it, when the registry has it
    (``WatchEvent.prior``)."""


Item = EncodedEvent | BaseException | None
"""What a subscriber's queue carries: events, the error that ended the feed, or None (end)."""


def encode(
    event_type: str, obj: AnyResource, revision: int, prior: AnyResource | None = None
) -> EncodedEvent:
    document = {"type": event_type, "object": to_document(obj)}
    line = json.dumps(document, separators=(",", ":")).encode() + b"\n"
    return EncodedEvent(event_type, obj, revision, line, prior)


class Subscription:
    """One watcher's view of a feed."""

    def __init__(self, queue: asyncio.Queue[Item], leave: Callable[[], None]) -> None:
        self.queue = queue
        self._leave = leave

    def close(self) -> None:
        self._leave()


class Feed:
    """One registry watch of ``kind`` under ``scope``, from ``start`` on."""

    def __init__(
        self,
        *,
        registry: RegistryApi,
        kind: Kind,
        scope: tuple[str, ...],
        start: int,
        on_idle: Callable[[Feed], None],
        history: int | None = None,
    ) -> None:
        self.kind = kind
        self.scope = scope
        self._registry = registry
        self._history: collections.deque[EncodedEvent] = collections.deque()
        self._history_size = HISTORY if history is None else history
        self._covered_after = start
        """Every event with a revision above this is in the history or still to come."""
        self._subscribers: dict[asyncio.Queue[Item], int] = {}
        """Each watcher's queue and the revision it resumes after."""
        self._on_idle = on_idle
        self._ended = False
        self._task = asyncio.create_task(self._run(start), name=f"watch-feed-{kind.value}")

    def covers(self, revision: int) -> bool:
        return not self._ended and revision >= self._covered_after

    def subscribe(self, after: int) -> Subscription:
        """Events with revision > ``after``; the caller checked ``covers(after)``."""
        queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=QUEUE_SIZE)
        for event in self._history:
            if event.revision > after:
                queue.put_nowait(event)
        self._subscribers[queue] = after
        return Subscription(queue, lambda: self._leave(queue))

    def _leave(self, queue: asyncio.Queue[Item]) -> None:
        self._subscribers.pop(queue, None)
        if not self._subscribers:
            self.close()

    def close(self) -> None:
        if not self._ended:
            self._ended = True
            self._task.cancel()
            self._on_idle(self)

    async def wait_closed(self) -> None:
        await wait_ended(self._task)

    def _publish(self, item: Item) -> None:
        for queue, after in list(self._subscribers.items()):
            if isinstance(item, EncodedEvent) and item.revision <= after:
                continue  # joined after this revision (its list already had it)
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                # A client that stopped reading: cut it off rather than stall the others.
                self._subscribers.pop(queue, None)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(
                    Gone(
                        f"watch of {self.kind.value} fell too far behind; list again and "
                        "watch from the list's resourceVersion",
                        compacted_revision=self._covered_after,
                    )
                )

    async def _run(self, start: int) -> None:
        try:
            async for event in self._registry.watch(self.kind, self.scope, resource_version=start):
                encoded = encode(event.type, event.object, event.revision, event.prior)
                self._history.append(encoded)
                if len(self._history) > self._history_size:
                    self._covered_after = self._history.popleft().revision
                self._publish(encoded)
            final: Item = None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to every watcher, which reports it
            final = exc
        self._ended = True
        self._publish(final)
        self._subscribers.clear()
        self._on_idle(self)


class WatchHub:
    """The shared feeds of one API server."""

    def __init__(self, *, registry: RegistryApi) -> None:
        self._registry = registry
        self._feeds: dict[tuple[Kind, tuple[str, ...]], Feed] = {}
        self._private: set[Feed] = set()

    def subscribe(self, kind: Kind, scope: tuple[str, ...], after: int) -> Subscription:
        """Events of ``kind`` under ``scope`` with revision > ``after``."""
        shared = self._feeds.get((kind, scope))
        if shared is not None and shared.covers(after):
            return shared.subscribe(after)
        feed = Feed(
            registry=self._registry, kind=kind, scope=scope, start=after, on_idle=self._forget
        )
        if shared is None:
            self._feeds[(kind, scope)] = feed
        else:
            self._private.add(feed)  # resuming from before the shared feed: its own stream
        return feed.subscribe(after)

    def _forget(self, feed: Feed) -> None:
        if self._feeds.get((feed.kind, feed.scope)) is feed:
            del self._feeds[(feed.kind, feed.scope)]
        self._private.discard(feed)

    async def close(self) -> None:
        feeds = [*self._feeds.values(), *self._private]
        for feed in feeds:
            feed.close()
        for feed in feeds:
            await feed.wait_closed()

    @property
    def feed_count(self) -> int:
        return len(self._feeds) + len(self._private)
