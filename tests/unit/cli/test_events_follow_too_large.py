"""`kukectl events -w` meeting a server behind its revision (504 ResourceVersionTooLarge:
its etcd was restored from an older backup) lists again and goes on from the list's
revision, as after a 410, instead of asking again for a revision that may never come."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kukeon.cli import events
from kukeon.cli.eventview import EventUpdate
from kukeon.client.apiclient import ApiRequestError
from kukeon.client.errors import StatusCause
from tests.unit.cli.test_events_follow import _event, _follow, _scripted, _Shown


def test_a_revision_the_server_has_not_reached_lists_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    too_large = ApiRequestError(
        504,
        "Timeout",
        "Timeout: Too large resource version: 11, current: 4",
        causes=[
            StatusCause("resourceVersion", "Too large resource version", "ResourceVersionTooLarge")
        ],
    )
    opens = iter(
        [
            [EventUpdate("ADDED", _event("Created"), 11)],
            too_large,
            [EventUpdate("ADDED", _event("Started"), 5)],
            ApiRequestError(403, "Forbidden", "the token was revoked"),
        ]
    )
    asked = _scripted(monkeypatch, opens)
    listed: list[Any] = []

    async def list_events(client: Any, realm: Any, *, field_selector: Any = None) -> Any:
        listed.append(realm)
        return SimpleNamespace(items=[], resource_version=4)

    monkeypatch.setattr(events, "list_events", list_events)
    shown = _Shown()
    with pytest.raises(ApiRequestError):
        _follow(shown)
    assert shown.reasons == ["Created", "Started"]
    assert listed == [None]
    assert asked == [10, 11, 4, 5]  # from the list's revision, not 11 again
