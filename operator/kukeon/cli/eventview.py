"""Events in kukectl: reading them from the API and printing them as kubectl does.

Used by ``kukectl events`` (``cli/events.py``) and by ``kukectl describe``, whose page
ends with the object's recent Events (``output.describe``). The rendering functions are
pure (Events and a clock in, text out); the readers speak the API's Event routes
(``kukeon.apiserver.events``) through ``ApiClient``'s plain requests and streams.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import NamedTuple

from pydantic import ValidationError

from kukeon.api import EVENT_KINDS, AnyResource, Event, Kind, key_of
from kukeon.api.fieldterms import term
from kukeon.client.apiclient import (
    ApiClient,
    ApiRequestError,
    ServerUnreachable,
    list_items,
    watch_event,
)
from kukeon.client.paths import API_ROOT

from .output import last_seen, sort_events
from .tables import NONE, format_rows


class EventListing(NamedTuple):
    items: list[Event]
    resource_version: int


class EventUpdate(NamedTuple):
    """One line of an Event watch; BOOKMARKs carry only the revision."""

    type: str
    event: Event | None
    resource_version: int


def events_path(realm: str | None) -> str:
    """The API's Events of ``realm``, or of every realm (``kukeon.apiserver.events``)."""
    return f"{API_ROOT}/events" if realm is None else f"{API_ROOT}/realms/{realm}/events"


def _parse(document: object, answer_to: str) -> Event:
    try:
        return Event.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the Event"
        raise ApiRequestError(
            500,
            "InternalError",
            f"the server's answer to {answer_to} holds an Event kukectl cannot read "
            f"({exc.error_count()} error(s), first {where}: {first['msg']})",
        ) from exc


def _params(field_selector: str | None) -> dict[str, str]:
    return {"fieldSelector": field_selector} if field_selector else {}


async def list_events(
    client: ApiClient, realm: str | None, *, field_selector: str | None = None
) -> EventListing:
    """The Events of ``realm`` (every realm when None) the caller may see."""
    path = events_path(realm)
    document = await client.request("GET", path, params=_params(field_selector))
    documents, revision = list_items(document, f"GET {path}")
    return EventListing([_parse(item, f"GET {path}") for item in documents], revision)


async def watch_events(
    client: ApiClient,
    realm: str | None,
    *,
    resource_version: int,
    field_selector: str | None = None,
) -> AsyncIterator[EventUpdate]:
    """Changes after ``resource_version``; an ERROR line raises ``ApiRequestError``."""
    params = {"watch": "true", "resourceVersion": str(resource_version), **_params(field_selector)}
    watched = f"GET {events_path(realm)}?watch=true"
    buffer = b""
    async for chunk in client.stream("GET", events_path(realm), params=params):
        buffer += chunk
        while b"\n" in buffer:
            line, _, buffer = buffer.partition(b"\n")
            if not line.strip():
                continue
            try:
                change = json.loads(line)
            except ValueError as exc:
                raise ServerUnreachable(f"event watch on {client.address} broke: {exc}") from exc
            kind, obj, revision = watch_event(change, watched, line)
            if kind == "ERROR":
                raise ApiRequestError.from_status(obj, 500)
            yield EventUpdate(kind, None if kind == "BOOKMARK" else _parse(obj, watched), revision)


def selector_for(kind: Kind, key: Sequence[str], uid: str | None = None) -> str:
    """The fieldSelector of one object's Events (its kind, name, space, stack and uid), each
    value escaped: ``--for cell/a,type=Normal`` names one cell, it adds no term."""
    terms = [term("involvedObject.kind", kind.value), term("involvedObject.name", key[-1])]
    levels = ("involvedObject.space", "involvedObject.stack")
    terms += [term(field, name) for field, name in zip(levels, key[1:-1], strict=False)]
    if uid:
        terms.append(term("involvedObject.uid", uid))
    return ",".join(terms)


async def events_of(client: ApiClient, res: AnyResource) -> list[Event] | None:
    """The Events about ``res`` for its describe page; None when it has none to have (a
    Node, a Secret) or the server does not serve Events (an older kukeond)."""
    kind = Kind(res.kind)
    if kind not in EVENT_KINDS:
        return None
    key = key_of(res)
    try:
        listing = await list_events(
            client, key[0], field_selector=selector_for(kind, key, res.metadata.uid)
        )
    except ApiRequestError as exc:
        if exc.code in (404, 405):
            return None
        raise
    return sort_events(listing.items)


# --- printing ---------------------------------------------------------------------------


EVENT_COLUMNS = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]


def event_row(event: Event, now: datetime, *, with_realm: bool) -> list[str]:
    row = [event.metadata.realm] if with_realm else []
    return [
        *row,
        last_seen(event, now),
        str(event.type),
        event.reason,
        event.involved_object.path,
        event.message or NONE,
    ]


def event_columns(*, with_realm: bool) -> list[str]:
    return (["REALM"] if with_realm else []) + EVENT_COLUMNS


def render_events(
    events: Sequence[Event], *, now: datetime, with_realm: bool = False, headers: bool = True
) -> str:
    rows = [event_columns(with_realm=with_realm)] if headers else []
    rows += [event_row(event, now, with_realm=with_realm) for event in sort_events(events)]
    return "\n".join(format_rows(rows))
