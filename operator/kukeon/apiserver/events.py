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
a 400). ``labelSelector`` is applied to an Event's labels, which it has none of (as
kube-apiserver's Events most often): ``!a`` or ``a notin (x)`` chooses every Event, ``a=b``
none; it used to be ignored.
A watch speaks the resource watches' protocol: ADDED (first the existing Events unless
``resourceVersion`` is given), MODIFIED (a repeat bumped its count), DELETED (it expired),
BOOKMARK while idle, ERROR (a Status; 410 when the revision was compacted).
Each watcher holds its own etcd watch of the realm's Events (the resource watch hub is
keyed by kind; Event watches are few: ``kukectl events -w``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kukeon.api import API_VERSION, EVENT_KIND, EVENT_LIST_KIND, Event
from kukeon.apiserver import queryparams
from kukeon.apiserver.auth import Principal, Verb, denial
from kukeon.apiserver.fieldselector import FieldSelector, FieldSelectorError, parse_terms
from kukeon.apiserver.request import label_selector, principal_of
from kukeon.apiserver.revisionwait import wait_for_revision, wait_limit
from kukeon.apiserver.status import ApiError, Cause, from_store_error
from kukeon.apiserver.watchstream import CLOSING_KEY, WatchResponder, event_line
from kukeon.cancelling import cancel_and_wait
from kukeon.client.paths import API_ROOT
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


_Item = EventChange | BaseException | None


class EventRoutes:
    """GET (list, watch) of Events, on an application whose middlewares authenticate."""

    def __init__(
        self,
        *,
        store: EventStore,
        bookmark_interval: float = 30.0,
        watch_start_grace: float = 0.3,
        request_timeout: float = 30.0,
    ) -> None:
        """``request_timeout``: the server's (``ApiSettings``), which bounds the wait for a
        future resourceVersion as on the resource routes (``revisionwait.wait_limit``)."""
        self.store = store
        self.request_timeout = request_timeout
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
        # An Event has no labels: the selector chooses all of them or none.
        labelled = label_selector(request)[1].matches(None)
        requested = (
            queryparams.watch_resource_version(request)
            if watching
            else queryparams.list_resource_version(request)
        )
        queryparams.whole_list_options(request, watch=watching)
        timeout = queryparams.timeout_seconds(request)
        if requested:  # newer than etcd's revision: a 504 after a wait (``revisionwait``)
            wait = wait_limit(self.request_timeout, timeout if watching else None)
            await self._store(wait_for_revision(requested, self.store.current_revision, wait=wait))

        def visible(event: Event) -> bool:
            return labelled and _may_see(principal, event) and chosen.matches(event)

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

        def encode(change: EventChange) -> tuple[int, bytes | None]:
            if not visible(change.event):
                return change.revision, None
            return change.revision, event_line(change.type, change.event.document())

        responder = WatchResponder(
            kind=EVENT_KIND,
            encode=encode,
            bookmark_interval=self.bookmark_interval,
            start_grace=self.watch_start_grace,
            closing=request.app.get(CLOSING_KEY),
        )
        task = asyncio.create_task(pump(), name="watch-events")
        try:
            return await responder.respond(
                request,
                queue,
                initial=[event.document() for event in initial],
                start=start,
                stream_for=stream_for,
            )
        finally:
            await cancel_and_wait(task)


def _may_see(principal: Principal, event: Event) -> bool:
    return principal.may_see_realm(event.metadata.realm)
