"""`kukectl events -w` resumes its watch as `get -w`'s reflector does: a reopen refused
with a 429 or a 5xx (a server restarting, its etcd away) is waited out, while the first
open's refusal is the command's error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from kukeon.api import Event, EventType, InvolvedObject, new_event
from kukeon.cli import events
from kukeon.cli.eventview import EventUpdate
from kukeon.client.apiclient import ApiRequestError


def _event(reason: str) -> Event:
    return new_event(
        involved=InvolvedObject.of("Cell", ("r", "s", "st", "c"), "u-1"),
        reason=reason,
        message=reason.lower(),
        type=EventType.NORMAL,
        at=datetime(2026, 12, 5, 9, 0, tzinfo=UTC),
        node="n1",
    )


class _Shown:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def show(self, event: Event) -> None:
        self.reasons.append(event.reason)


def _scripted(monkeypatch: pytest.MonkeyPatch, opens: Iterator[Any]) -> list[int]:
    """Each open of the watch plays the next script: an error to raise, or updates to
    yield (then the stream ends); the revisions each open asked from are returned."""
    asked: list[int] = []

    async def watch_events(
        client: Any, realm: Any, *, resource_version: int, field_selector: Any = None
    ) -> AsyncIterator[EventUpdate]:
        asked.append(resource_version)
        script = next(opens)
        if isinstance(script, Exception):
            raise script
        for update in script:
            yield update

    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(events, "watch_events", watch_events)
    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    return asked


def _follow(shown: _Shown) -> None:
    follow = events._follow(None, None, None, 10, shown, lambda _: True)  # type: ignore[arg-type]
    asyncio.run(follow)


def test_a_reopen_refused_by_a_5xx_or_a_429_is_waited_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unavailable = ApiRequestError(503, "ServiceUnavailable", "etcd does not answer")
    busy = ApiRequestError(429, "TooManyRequests", "at the bound")
    opens = iter(
        [
            [EventUpdate("ADDED", _event("Created"), 11)],
            unavailable,
            busy,
            [EventUpdate("ADDED", _event("Started"), 12)],
            ApiRequestError(403, "Forbidden", "the token was revoked"),
        ]
    )
    asked = _scripted(monkeypatch, opens)
    shown = _Shown()
    with pytest.raises(ApiRequestError) as refused:
        _follow(shown)
    assert refused.value.code == 403  # what waiting cannot mend ends the command
    assert shown.reasons == ["Created", "Started"]
    assert asked == [10, 11, 11, 11, 12]  # each reopen resumes after the last seen


def test_the_first_open_refused_by_a_5xx_is_the_commands_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _scripted(monkeypatch, iter([ApiRequestError(503, "ServiceUnavailable", "etcd away")]))
    with pytest.raises(ApiRequestError) as refused:
        _follow(_Shown())
    assert refused.value.code == 503
