"""One HTTP watch answer: newline-delimited ``{type, object}`` events from a queue.

The resource watches (``resourcereads``) and the Event watches (``events``) speak the same
protocol and are served by one ``WatchResponder``:

- a compacted revision is refused by etcd as soon as the watch starts: when there is no
  initial list to send, the first item is awaited for ``start_grace`` seconds so that the
  refusal can be a plain HTTP 410 rather than an ERROR event;
- the existing objects go out first, as ADDED;
- then every item of the queue: a change (encoded by the caller, who also says whether
  the watcher may see it), the error that ended the source (an ERROR event carrying a
  Status) or None (the end);
- a BOOKMARK with a revision the client can resume from every ``bookmark_interval``
  seconds of quiet;
- the stream ends when the client goes away, the server shuts down (``CLOSING_KEY``) or
  the client's ``timeoutSeconds`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from aiohttp import web

from kukeon.api import API_VERSION
from kukeon.apiserver.status import ApiError, from_store_error
from kukeon.store import StoreError

log = logging.getLogger(__name__)

CLOSING_KEY = web.AppKey("kukeon_closing", asyncio.Event)
"""Set when the application shuts down: open watches end their streams."""

T = TypeVar("T")


class _Nothing(enum.Enum):
    """No item in hand (None is one: the end of the source)."""

    NOTHING = enum.auto()


_NOTHING = _Nothing.NOTHING

Encoder = Callable[[T], tuple[int, bytes | None]]
"""A change's revision and its line, or None when this watcher must not see it."""


def event_line(event_type: str, document: Mapping[str, Any]) -> bytes:
    """One watch event as its NDJSON line."""
    line = json.dumps({"type": event_type, "object": document}, separators=(",", ":"))
    return line.encode() + b"\n"


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class WatchResponder(Generic[T]):
    """Answers one watch request of ``kind`` from a queue of changes (T), errors and the end."""

    def __init__(
        self,
        *,
        kind: str,
        encode: Encoder[T],
        bookmark_interval: float,
        start_grace: float,
        closing: asyncio.Event | None,
        current_revision: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        """``current_revision`` (the store's) lets a quiet watcher's bookmark move past the
        last change it was sent; without it a bookmark repeats the last change's revision."""
        self._kind = kind
        self._encode = encode
        self._bookmark_interval = bookmark_interval
        self._start_grace = start_grace
        self._closing = closing
        self._current_revision = current_revision

    async def respond(
        self,
        request: web.Request,
        queue: asyncio.Queue[T | BaseException | None],
        *,
        initial: Sequence[Mapping[str, Any]],
        start: int,
        stream_for: float | None,
    ) -> web.StreamResponse:
        """``initial`` documents as ADDED, then the queue's items after revision ``start``."""
        first: T | BaseException | _Nothing | None = _NOTHING
        if not initial and self._start_grace > 0:
            # (asyncio.timeout, not wait_for: on Python 3.11 that loses cancellations)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._start_grace):
                    first = await queue.get()
        if isinstance(first, StoreError):
            raise from_store_error(first, kind=self._kind)
        if isinstance(first, BaseException):
            raise first
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Cache-Control": "no-store"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for document in initial:
                await response.write(event_line("ADDED", document))
            await self._follow(request, response, queue, first, start, stream_for)
        except ConnectionError:
            # The client left, or was cut off for reading nothing (``lowlevel``), while a line
            # was being written: a reset, or the bare "Connection lost" of a write that
            # waited on it. Nobody is left to answer.
            log.debug("%s watch: the connection closed", self._kind)
        return response

    async def _follow(
        self,
        request: web.Request,
        response: web.StreamResponse,
        queue: asyncio.Queue[T | BaseException | None],
        first: T | _Nothing | None,
        start: int,
        stream_for: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + stream_for if stream_for else None
        next_bookmark = loop.time() + self._bookmark_interval
        last = start
        pending: T | BaseException | _Nothing | None = first
        while True:
            if pending is _NOTHING:
                if self._ended(request, deadline):
                    return
                now = loop.time()
                if now >= next_bookmark:
                    last = max(last, await self._bookmark_revision(queue, last))
                    if queue.empty():
                        await response.write(event_line("BOOKMARK", self._bookmark(last)))
                    next_bookmark = loop.time() + self._bookmark_interval
                    continue
                wait = min(next_bookmark - now, 1.0)
                if deadline is not None:
                    wait = min(wait, max(deadline - now, 0.0))
                try:
                    async with asyncio.timeout(wait):
                        pending = await queue.get()
                except TimeoutError:
                    continue
            item, pending = pending, _NOTHING
            if item is None:
                return
            if isinstance(item, BaseException):
                await response.write(event_line("ERROR", self._error(item).to_status()))
                return
            revision, line = self._encode(item)
            last = max(last, revision)
            if line is not None:
                await response.write(line)

    def _ended(self, request: web.Request, deadline: float | None) -> bool:
        if client_gone(request) or (self._closing is not None and self._closing.is_set()):
            return True
        return deadline is not None and asyncio.get_running_loop().time() >= deadline

    async def _bookmark_revision(
        self, queue: asyncio.Queue[T | BaseException | None], last: int
    ) -> int:
        """A revision an idle watcher can safely resume from.

        The store's current revision may be ahead of an event etcd has not yet delivered
        to us; a short pause lets such an event land in the queue first (it then goes out
        before the bookmark, which is skipped this round).
        """
        if self._current_revision is None:
            return last
        try:
            revision = await self._current_revision()
        except StoreError:
            return last
        await asyncio.sleep(min(0.05, self._bookmark_interval / 10))
        return revision if queue.empty() else last

    def _bookmark(self, revision: int) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self._kind,
            "metadata": {"resourceVersion": str(revision)},
        }

    def _error(self, error: BaseException) -> ApiError:
        if isinstance(error, StoreError):
            return from_store_error(error, kind=self._kind)
        log.error("watch of %s failed", self._kind, exc_info=error)
        return ApiError(500, "the watch stream failed; see the server log")
