"""A watch with selectors says when an object starts matching (ADDED) and when it stops
(DELETED), as kube-apiserver's watch cache does; before, an object relabelled out of a
``-l`` watch was never taken back from the client."""

from __future__ import annotations

import json

from kukeon.api import AnyResource, parse_resource
from kukeon.apiserver.resourcereads import ChosenObjects
from kukeon.apiserver.watchhub import encode
from kukeon.store import parse_selector


def _realm(name: str, **labels: str) -> AnyResource:
    return parse_resource(
        {"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": name, "labels": labels}}
    )


SELECTOR = parse_selector("rank>4")


def _sent(chosen: ChosenObjects, event_type: str, res: AnyResource) -> str | None:
    event = encode(event_type, res, 7)
    line = chosen.line(event, now=SELECTOR.matches(res.metadata.labels))
    if line is None:
        return None
    document = json.loads(line)
    assert document["object"]["metadata"]["labels"] == dict(res.metadata.labels or {})
    return str(document["type"])


def test_an_object_leaving_and_joining_a_listed_watch_is_deleted_and_added() -> None:
    chosen = ChosenObjects([_realm("a", rank="5")], listed=True)
    assert _sent(chosen, "MODIFIED", _realm("a", rank="6")) == "MODIFIED"
    assert _sent(chosen, "MODIFIED", _realm("a", rank="1")) == "DELETED"
    assert _sent(chosen, "MODIFIED", _realm("a", rank="2")) is None
    assert _sent(chosen, "MODIFIED", _realm("a", rank="9")) == "ADDED"
    assert _sent(chosen, "DELETED", _realm("a", rank="9")) == "DELETED"
    # Never shown: its changes and its delete are not the client's business.
    assert _sent(chosen, "ADDED", _realm("b", rank="1")) is None
    assert _sent(chosen, "DELETED", _realm("b", rank="1")) is None
    assert _sent(chosen, "ADDED", _realm("c", rank="8")) == "ADDED"


def test_a_resumed_watch_follows_each_object_from_its_first_event() -> None:
    chosen = ChosenObjects([], listed=False)
    # What the client listed is not known: a match is passed on as the feed says it...
    assert _sent(chosen, "MODIFIED", _realm("a", rank="5")) == "MODIFIED"
    # ...and followed from then on.
    assert _sent(chosen, "MODIFIED", _realm("a", rank="1")) == "DELETED"
    assert _sent(chosen, "MODIFIED", _realm("a", rank="7")) == "ADDED"
    assert _sent(chosen, "DELETED", _realm("z", rank="7")) == "DELETED"


def test_a_resumed_watch_judges_a_first_event_by_the_version_before() -> None:
    """kukectl's ``get -w`` and reflectors list, then watch from the list's revision: an
    object they listed that stops matching is DELETED by its version before."""
    chosen = ChosenObjects([], listed=False)

    def sent(res: AnyResource, revision: int, *, before: bool) -> str | None:
        event = encode("MODIFIED", res, revision)
        line = chosen.line(event, now=SELECTOR.matches(res.metadata.labels), before=before)
        return None if line is None else str(json.loads(line)["type"])

    assert sent(_realm("a", rank="1"), 7, before=True) == "DELETED"
    assert sent(_realm("b", rank="9"), 8, before=False) == "ADDED"
    assert sent(_realm("c", rank="1"), 9, before=False) is None
    assert sent(_realm("d", rank="6"), 10, before=True) == "MODIFIED"
