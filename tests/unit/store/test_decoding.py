"""Stored bytes are untrusted: decoding says why a document is not a resource, never raises."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from kukeon.api import Kind
from kukeon.store.decoding import InvalidDocuments, load_document, parse_document

REALM = {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "r"}}


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"{nope", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'"text"', "not a JSON object (a JSON str)"),
        (b"{}", "no metadata object"),
        (b'{"metadata": [1]}', "no metadata object"),
    ],
)
def test_what_does_not_load_says_why(value: bytes, why: str) -> None:
    loaded = load_document(value)
    assert isinstance(loaded, str)
    assert why in loaded
    assert len(loaded) < 400


def test_a_valid_document_parses_with_its_revision() -> None:
    loaded = load_document(json.dumps(REALM).encode())
    assert isinstance(loaded, dict)
    parsed = parse_document(loaded, kind=Kind.REALM, key=("r",), revision=7)
    assert not isinstance(parsed, str)
    assert parsed.metadata.resource_version == "7"


@pytest.mark.parametrize(
    ("document", "kind", "key", "why"),
    [
        ({**REALM, "spec": {"bogus": 1}}, Kind.REALM, ("r",), "not a valid resource"),
        (REALM, Kind.SPACE, ("x", "r"), "holds a Realm, not a Space"),
        (REALM, Kind.REALM, ("other",), "names 'r' but is stored under 'other'"),
        ({**REALM, "kind": "Nothing"}, Kind.REALM, ("r",), "not a valid resource"),
    ],
)
def test_what_does_not_parse_says_why(
    document: dict[str, object], kind: Kind, key: tuple[str, ...], why: str
) -> None:
    loaded = load_document(json.dumps(document).encode())
    assert isinstance(loaded, dict)
    parsed = parse_document(loaded, kind=kind, key=key, revision=1)
    assert isinstance(parsed, str)
    assert why in parsed


def test_each_invalid_version_is_logged_once_and_counted_until_fixed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    invalid = InvalidDocuments()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            invalid.seen(Kind.CELL, b"/k/cells/a", 3, "no metadata object")
        invalid.seen(Kind.CELL, b"/k/cells/a", 4, "no metadata object")
        invalid.seen(Kind.REALM, b"/k/realms/b", 9, "not JSON")
    assert len(caplog.records) == 3
    assert invalid.counts()[Kind.CELL] == 1
    assert invalid.counts()[Kind.REALM] == 1
    assert invalid.was_invalid(b"/k/cells/a", 3)
    invalid.valid(b"/k/cells/a", 2)  # an older valid version does not clear a newer bad one
    assert invalid.counts()[Kind.CELL] == 1
    invalid.valid(b"/k/cells/a", 5)
    assert invalid.counts()[Kind.CELL] == 0
    invalid.listed(b"/k/realms/", b"/k/realms0", set(), 10)
    assert invalid.counts()[Kind.REALM] == 0


def test_counts_can_be_read_from_another_thread_while_it_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="kukeon.store.decoding")  # 10,000 warnings otherwise
    invalid = InvalidDocuments()
    stop = threading.Event()
    failures: list[BaseException] = []

    def scrape() -> None:
        while not stop.is_set():
            try:
                invalid.counts()
            except BaseException as error:  # the scrape thread must never see a torn dict
                failures.append(error)
                return

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        for index in range(10_000):
            invalid.seen(Kind.CELL, f"/k/{index % 50}".encode(), index, "bad")
            invalid.valid(f"/k/{(index + 7) % 50}".encode(), index)
    finally:
        stop.set()
        thread.join()
    assert failures == []


def test_a_stale_read_does_not_count_a_fixed_key_again() -> None:
    invalid = InvalidDocuments()
    invalid.seen(Kind.REALM, b"/k/realms/x", 5, "no metadata object")
    invalid.valid(b"/k/realms/x", 8)  # deleted (or rewritten valid) at revision 8
    # A list that read at revision 6, finishing after the delete, sees the old version.
    invalid.seen(Kind.REALM, b"/k/realms/x", 5, "no metadata object")
    assert invalid.counts()[Kind.REALM] == 0
    invalid.seen(Kind.REALM, b"/k/realms/x", 9, "not JSON")  # broken again, later
    assert invalid.counts()[Kind.REALM] == 1
