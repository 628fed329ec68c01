"""The Event routes: list and watch what happened to the objects of a realm, or of all.

```
GET /apis/kukeon.io/v1beta1/realms/{realm}/events[?watch=true][&fieldSelector=...]
GET /apis/kukeon.io/v1beta1/events[?watch=true][&fieldSelector=...]     every realm
```

Events are read-only through the API (kukeond writes them; etcd expires them). Reading
them is a read of the realm: the same roles and realms as every other list and watch
(``auth.denial`` with the realm of the URL; across realms, an editor sees only its
realms' Events). ``fieldSelector`` takes ``involvedObject.kind``, ``involvedObject.name``,
``involvedObject.space``, ``involvedObject.stack``, ``involvedObject.uid``, ``reason``,
``type``, ``source.node`` and ``metadata.name`` (``=``, ``==``, ``!=``; another field is
a 400). A watch speaks the resource watches' protocol: ADDED (first the existing Events
unless ``resourceVersion`` is given), MODIFIED (a repeat bumped its count), DELETED (it
expired), BOOKMARK while idle, ERROR (a Status; 410 when the revision was compacted).
Each watcher holds its own etcd watch of the realm's Events (the resource watch hub is
keyed by kind; Event watches are few: ``kukectl events -w``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kukeon.api import API_VERSION, EVENT_KIND, EVENT_LIST_KIND, Event
from kukeon.apiserver import queryparams
from kukeon.apiserver.app import CLOSING_KEY
from kukeon.apiserver.auth import Principal, Verb, denial
from kukeon.apiserver.fieldselector import FieldSelector, FieldSelectorError, parse_terms
from kukeon.apiserver.handlers import principal_of
from kukeon.apiserver.paths import API_ROOT
from kukeon.apiserver.status import ApiError, Cause, from_store_error
from kukeon.store import StoreError
from kukeon.store.events import EventChange, EventStore

log = logging.getLogger(__name__)

EVENTS_PATH = f"{API_ROOT}/events"
REALM_EVENTS_PATH = f"{API_ROOT}/realms/{{realm}}/events"


def events_path(realm: str | None) -> str:
    """The Events of ``realm``, or of every realm when None."""
    return EVENTS_PATH if realm is None else f"{API_ROOT}/realms/{realm}/events"


_Getter = Callable[[Event], str]
FIELDS: dict[str, _Getter] = {
    "involvedObject.kind": lambda e: e.involved_object.kind,
    "involvedObject.name": lambda e: e.involved_object.name,
    "involvedObject.space": lambda e: e.involved_object.space or "",
    "involvedObject.stack": lambda e: e.involved_object.stack or "",
    "involvedObject.uid": lambda e: e.involved_object.uid or "",
    "reason": lambda e: e.reason,
    "type": lambda e: str(e.type),
    "source.node": lambda e: e.source.node or "",
    "metadata.name": lambda e: e.metadata.name,
}


def parse_event_selector(text: str | None) -> FieldSelector[Event]:
    """``involvedObject.name=web,type!=Normal``; FieldSelectorError naming a bad term."""
    return parse_terms(text, FIELDS, "Event")


def _list_document(items: list[Event], revision: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": EVENT_LIST_KIND,
        "metadata": {"resourceVersion": str(revision)},
        "items": [event.document() for event in items],
    }


def _line(event_type: str, document: dict[str, Any]) -> bytes:
    return (
        json.dumps({"type": event_type, "object": document}, separators=(",", ":")).encode() + b"\n"
    )


_Item = EventChange | BaseException | None


class EventRoutes:
    """GET (list, watch) of Events, on an application whose middlewares authenticate."""

    def __init__(
        self,
        *,
        store: EventStore,
        bookmark_interval: float = 30.0,
        watch_start_grace: float = 0.3,
    ) -> None:
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.watch_start_grace = watch_start_grace

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(EVENTS_PATH, self.handle)
        app.router.add_get(REALM_EVENTS_PATH, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        realm = request.match_info.get("realm")
        watching = queryparams.flag(request, "watch")
        verb: Verb = "watch" if watching else "list"
        principal = principal_of(request)
        where = f"events of realm {realm!r}" if realm else "events of every realm"
        why = denial(principal, verb=verb, realm=realm, subresource=None)
        if why is not None:
            raise ApiError(403, f"{why}: {verb} {where} is forbidden", kind=EVENT_KIND)
        try:
            chosen = parse_event_selector(queryparams.single(request, "fieldSelector"))
        except FieldSelectorError as exc:
            raise ApiError(
                400, f"fieldSelector: {exc}", causes=[Cause("fieldSelector", str(exc))]
            ) from None
        requested = queryparams.resource_version(request)
        timeout = queryparams.timeout_seconds(request)

        def visible(event: Event) -> bool:
            return _may_see(principal, event) and chosen.matches(event)

        if not watching:
            listed = await self._store(self.store.list(realm))
            items = [event for event in listed.items if visible(event)]
            return web.json_response(_list_document(items, listed.resource_version))
        return await self._watch(request, realm, visible, requested, stream_for=timeout)

    @staticmethod
    async def _store(call: Any) -> Any:
        try:
            return await call
        except StoreError as exc:
            raise from_store_error(exc, kind=EVENT_KIND) from None

    async def _watch(
        self,
        request: web.Request,
        realm: str | None,
        visible: Callable[[Event], bool],
        requested: int | None,
        *,
        stream_for: float | None,
    ) -> web.StreamResponse:
        initial: list[Event] = []
        if not requested:
            listed = await self._store(self.store.list(realm))
            initial = [event for event in listed.items if visible(event)]
            start = listed.resource_version
        else:
            start = requested
        queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=1024)

        async def pump() -> None:
            try:
                async for change in self.store.watch(realm, resource_version=start):
                    await queue.put(change)
                final: _Item = None
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # handed to the writer, which reports it
                final = exc
            await queue.put(final)

        task = asyncio.create_task(pump(), name="watch-events")
        try:
            first: _Item | bool = False
            if not initial and self.watch_start_grace > 0:
                # A compacted revision is refused at once: answer it as a plain 410.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.watch_start_grace):
                        first = await queue.get()
            if isinstance(first, StoreError):
                raise from_store_error(first, kind=EVENT_KIND)
            response = web.StreamResponse(
                headers={"Content-Type": "application/json", "Cache-Control": "no-store"}
            )
            response.enable_chunked_encoding()
            await response.prepare(request)
            for event in initial:
                await response.write(_line("ADDED", event.document()))
            await self._follow(request, response, queue, first, start, visible, stream_for)
            return response
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _follow(
        self,
        request: web.Request,
        response: web.StreamResponse,
        queue: asyncio.Queue[_Item],
        first: _Item | bool,
        start: int,
        visible: Callable[[Event], bool],
        stream_for: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        closing = request.app.get(CLOSING_KEY)
        deadline = loop.time() + stream_for if stream_for else None
        next_bookmark = loop.time() + self.bookmark_interval
        last = start
        pending: _Item | bool = first
        while True:
            if pending is False:
                now = loop.time()
                gone = request.transport is None or request.transport.is_closing()
                if gone or (closing is not None and closing.is_set()):
                    return
                if deadline is not None and now >= deadline:
                    return
                if now >= next_bookmark:
                    bookmark = {
                        "apiVersion": API_VERSION,
                        "kind": EVENT_KIND,
                        "metadata": {"resourceVersion": str(last)},
                    }
                    await response.write(_line("BOOKMARK", bookmark))
                    next_bookmark = now + self.bookmark_interval
                    continue
                wait = min(next_bookmark - now, 1.0)
                if deadline is not None:
                    wait = min(wait, max(deadline - now, 0.0))
                try:
                    async with asyncio.timeout(wait):
                        pending = await queue.get()
                except TimeoutError:
                    continue
            item, pending = pending, False
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, StoreError):
                    error = from_store_error(item, kind=EVENT_KIND)
                else:
                    log.error("watch of Events failed", exc_info=item)
                    error = ApiError(500, "the watch stream failed; see the server log")
                await response.write(_line("ERROR", error.to_status()))
                return
            assert isinstance(item, EventChange)
            last = max(last, item.revision)
            if visible(item.event):
                await response.write(_line(item.type, item.event.document()))


def _may_see(principal: Principal, event: Event) -> bool:
    return principal.may_see_realm(event.metadata.realm)
