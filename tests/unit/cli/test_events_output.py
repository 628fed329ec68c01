"""How kukectl prints Events: `kukectl events` tables and describe's Events section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kukeon.api import Cell, Event, EventType, InvolvedObject, Kind, new_event, parse_resource
from kukeon.apiserver.events import parse_event_selector
from kukeon.cli.events import _for_selector
from kukeon.cli.eventview import render_events, selector_for
from kukeon.cli.output import describe, last_seen

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def _event(
    reason: str,
    message: str,
    *,
    ago: float,
    count: int = 1,
    over: float = 0,
    warning: bool = False,
    key: tuple[str, ...] = ("prod", "edge", "web", "api"),
    kind: str = "Cell",
) -> Event:
    event = new_event(
        involved=InvolvedObject.of(kind, key, "u-1"),
        reason=reason,
        message=message,
        type=EventType.WARNING if warning else EventType.NORMAL,
        at=NOW - timedelta(seconds=ago + over),
        node="n1",
    )
    return event.model_copy(update={"count": count, "last_timestamp": NOW - timedelta(seconds=ago)})


def test_last_seen_says_how_often_and_over_how_long() -> None:
    assert last_seen(_event("Started", "x", ago=45), NOW) == "45s"
    assert last_seen(_event("Restarted", "x", ago=5, count=4, over=115), NOW) == "5s (x4 over 2m)"


def test_the_events_table_is_oldest_first_as_kubectl_events() -> None:
    events = [
        _event("Restarted", "restarted container app", ago=5, count=3, over=60),
        _event("Created", "created container app", ago=90),
        _event("OOMKilled", "container app was killed", ago=30, warning=True),
    ]
    assert render_events(events, now=NOW).splitlines() == [
        "LAST SEEN          TYPE      REASON      OBJECT              MESSAGE",
        "90s                Normal    Created     cell/edge/web/api   created container app",
        "30s                Warning   OOMKilled   cell/edge/web/api   container app was killed",
        "5s (x3 over 65s)   Normal    Restarted   cell/edge/web/api   restarted container app",
    ]
    realm = _event("Ready", "ready on node n1", ago=100, key=("prod",), kind="Realm")
    table = render_events([realm], now=NOW, with_realm=True, headers=False)
    assert table == "prod   100s   Normal   Ready   realm/prod   ready on node n1"


def test_the_selector_of_one_object_names_its_whole_key() -> None:
    assert selector_for(Kind.CELL, ("prod", "edge", "web", "api"), "u-1") == (
        "involvedObject.kind=Cell,involvedObject.name=api,involvedObject.space=edge,"
        "involvedObject.stack=web,involvedObject.uid=u-1"
    )
    assert (
        selector_for(Kind.REALM, ("prod",)) == "involvedObject.kind=Realm,involvedObject.name=prod"
    )


def test_a_name_with_commas_and_equals_is_one_escaped_value() -> None:
    """``--for cell/a,type=Normal`` made the selector ``...name=a,type=Normal``: a name
    that added a term. Each value is escaped as apimachinery's ``EscapeValue`` does."""
    text = selector_for(Kind.CELL, ("prod", "edge", "web", "a,type=Normal\\"))
    assert "involvedObject.name=a\\,type\\=Normal\\\\," in text
    chosen = parse_event_selector(text)
    assert [(t.field, t.value) for t in chosen.terms][:2] == [
        ("involvedObject.kind", "Cell"),
        ("involvedObject.name", "a,type=Normal\\"),
    ]


def test_describe_ends_with_the_events_section() -> None:
    cell = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "api"},
            "spec": {
                "realmId": "prod",
                "spaceId": "edge",
                "stackId": "web",
                "containers": [{"id": "app", "image": "busybox"}],
            },
        }
    )
    assert isinstance(cell, Cell)
    page = describe(
        cell,
        now=NOW,
        events=[
            _event("OOMKilled", "container app was killed", ago=30, warning=True),
            _event("Started", "started container app", ago=40, count=2, over=20),
        ],
    )
    assert page.splitlines()[-4:] == [
        "Events:",
        "  TYPE      REASON      AGE                 FROM   MESSAGE",
        "  Normal    Started     40s (x2 over 60s)   n1     started container app",
        "  Warning   OOMKilled   30s                 n1     container app was killed",
    ]
    assert describe(cell, now=NOW, events=[]).splitlines()[-2:] == ["Events:", "  <none>"]
    assert "Events:" not in describe(cell, now=NOW)


def test_for_names_one_object_in_its_realm() -> None:
    realm, selector = _for_selector("cell/api", "prod", "edge", "web")
    assert realm == "prod"
    assert selector == selector_for(Kind.CELL, ("prod", "edge", "web", "api"))
    realm, selector = _for_selector("realm/staging", "default", "default", "default")
    assert realm == "staging"
    assert selector == "involvedObject.kind=Realm,involvedObject.name=staging"
    assert _for_selector("sp/edge", "prod", "x", "y")[1].endswith("involvedObject.name=edge")
