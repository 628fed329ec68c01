"""The reconnecting watch (`follow`) against a scripted client: resume, dedupe, relist, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.client.apiclient import (
    ApiRequestError,
    ClientWatchEvent,
    ObjectList,
    ServerUnreachable,
)
from kukeon.client.reflector import Backoff, follow


def realm(name: str, rv: int) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": name, "resourceVersion": str(rv)},
        }
    )


def ev(kind: str, name: str, rv: int) -> ClientWatchEvent:
    return ClientWatchEvent(kind, realm(name, rv), rv)


def bookmark(rv: int) -> ClientWatchEvent:
    return ClientWatchEvent("BOOKMARK", None, rv)


class Script:
    """Each watch call plays the next script entry: events, then an end or an exception."""

    def __init__(
        self,
        streams: Sequence[tuple[list[ClientWatchEvent], Exception | None]],
        listing: ObjectList | None,
    ) -> None:
        self.streams = list(streams)
        self.listing = listing
        self.watched_from: list[int | None] = []
        self.lists = 0

    async def watch(
        self,
        kind: Kind,
        scope: Sequence[str] = (),
        *,
        resource_version: int | None = None,
        **_: Any,
    ) -> AsyncIterator[ClientWatchEvent]:
        self.watched_from.append(resource_version)
        if not self.streams:
            await asyncio.sleep(3600)
        events, error = self.streams.pop(0)
        for event in events:
            yield event
        if error is not None:
            raise error

    async def list(self, kind: Kind, scope: Sequence[str] = (), **_: Any) -> ObjectList:
        self.lists += 1
        assert self.listing is not None, "this script has no listing"
        return self.listing


async def collect(script: Script, count: int, **options: Any) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    stream = follow(script, Kind.REALM, backoff=Backoff(initial=0.01, maximum=0.02), **options)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        async for event in stream:
            assert event.object is not None
            seen.append((event.type, event.object.metadata.name))
            if len(seen) == count:
                break
    return seen


async def test_resumes_from_the_last_revision_and_drops_repeats() -> None:
    script = Script(
        [
            ([ev("ADDED", "a", 5), bookmark(9)], None),  # the stream ends
            ([ev("MODIFIED", "a", 5), ev("ADDED", "b", 10)], ServerUnreachable("cut")),
            ([ev("DELETED", "zz", 11), ev("DELETED", "a", 12)], None),
        ],
        listing=None,
    )
    seen = await collect(script, 3)
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    assert script.watched_from == [None, 9, 10]


async def test_gone_relists_and_reports_only_differences() -> None:
    listing = ObjectList([realm("a", 5), realm("c", 20)], 21)
    script = Script(
        [
            ([ev("ADDED", "a", 5), ev("ADDED", "b", 6)], None),
            ([], ApiRequestError(410, "Gone", "compacted")),
            ([ev("ADDED", "d", 22)], None),
        ],
        listing=listing,
    )
    notes: list[str] = []
    seen = await collect(script, 5, notify=notes.append)
    assert seen == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("DELETED", "b"),
        ("ADDED", "d"),
    ]
    assert script.watched_from == [None, 6, 21]
    assert script.lists == 1
    assert any("compacted" in note for note in notes)


async def test_first_connection_failures_are_not_retried() -> None:
    refused = Script([([], ApiRequestError(403, "Forbidden", "no"))], listing=None)
    with pytest.raises(ApiRequestError):
        await collect(refused, 1)
    unreachable = Script([([], ServerUnreachable("nobody home"))], listing=None)
    with pytest.raises(ServerUnreachable):
        await collect(unreachable, 1)


async def test_a_refusal_after_a_reconnect_is_raised_but_5xx_retries() -> None:
    script = Script(
        [
            ([ev("ADDED", "a", 5)], ApiRequestError(503, "ServiceUnavailable", "etcd")),
            ([ev("ADDED", "b", 6)], ApiRequestError(401, "Unauthorized", "token")),
        ],
        listing=None,
    )
    with pytest.raises(ApiRequestError) as refused:
        await collect(script, 3)
    assert refused.value.code == 401


async def test_stop_after_ends_even_while_the_server_is_away() -> None:
    streams: list[tuple[list[ClientWatchEvent], Exception | None]] = [
        ([ev("ADDED", "a", 5)], None)
    ] + [([], ServerUnreachable("down"))] * 1000
    script = Script(streams, listing=None)
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen = [e async for e in follow(script, Kind.REALM, stop_after=0.5)]  # type: ignore[arg-type]
    assert [e.type for e in seen] == ["ADDED"]
    assert loop.time() - started < 2.0


async def test_an_initial_list_is_not_delivered_again_and_the_watch_starts_after_it() -> None:
    script = Script(
        [([ev("ADDED", "a", 5), ev("MODIFIED", "a", 7), ev("ADDED", "b", 8)], None)],
        listing=None,
    )
    seen = await collect(script, 2, initial=[realm("a", 5)], initial_revision=6)
    assert seen == [("MODIFIED", "a"), ("ADDED", "b")]
    assert script.watched_from == [6]
