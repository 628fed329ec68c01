"""A status a controller writes fits the store whatever it repeats: each message and reason
cut with a marker that says so, cut harder when the document would not fit, never cut
twice; and a write the store refuses (too large) is said once, without a traceback."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from kukeon.api import (
    EventType,
    InvolvedObject,
    Kind,
    NodeLayerState,
    ObjectMeta,
    Space,
    SpaceNodeStatus,
    SpaceSpec,
    new_event,
)
from kukeon.framework.statusbound import (
    MESSAGE_CHARS,
    REASON_CHARS,
    TIGHT_MESSAGE_CHARS,
    bounded,
    bounded_fields,
    cut_text,
    listed,
)
from kukeon.store import MAX_DOCUMENT_BYTES, DocumentTooLarge

from .test_store_trouble import refused_passes


def size(resource: Any) -> int:
    return len(resource.model_dump_json(by_alias=True, exclude_none=True).encode())


def failed(message: str) -> SpaceNodeStatus:
    return SpaceNodeStatus(state=NodeLayerState.FAILED, reason="Boom", message=message)


def space(nodes: int, message: str, **annotations: str) -> Space:
    meta = ObjectMeta(name="s", annotations=annotations)
    obj = Space(metadata=meta, spec=SpaceSpec(realm_id="r"))
    obj.status.nodes.update({f"n{i:03}": failed(message) for i in range(nodes)})
    return obj


def test_a_long_text_is_cut_to_its_bound_with_a_marker_once() -> None:
    assert cut_text("short", 10) == "short"
    text = "é" * 100_000
    cut = cut_text(text, MESSAGE_CHARS)
    assert len(cut) <= MESSAGE_CHARS
    kept = len(cut) - len(cut.lstrip("é"))
    assert cut.endswith(f"... ({100_000 - kept} more characters cut)")
    assert cut_text(cut, MESSAGE_CHARS) == cut  # never cut again
    # Cut harder, or quoted and cut, it reads as the whole text would have.
    assert cut_text(cut, 300) == cut_text(text, 300)
    assert cut_text(f"node a: {cut}", 300) == cut_text(f"node a: {text}", 300)


def test_listed_names_the_first_few_and_counts_the_rest() -> None:
    assert listed(["a", "b"]) == "a, b"
    assert listed([f"n{i}" for i in range(8)]) == "n0, n1, n2, n3, n4 and 3 more"


def test_nothing_to_cut_is_the_same_object() -> None:
    obj = space(3, "no bridge")
    assert bounded(obj) is obj


def test_every_message_and_reason_is_cut_and_the_document_fits() -> None:
    # What a status write (or a node) can put in its entries: 100 nodes, 9 KiB each.
    obj = space(100, "x" * 9_000)
    obj.status.nodes["n000"] = obj.status.nodes["n000"].model_copy(update={"reason": "R" * 1000})
    obj.status.message = "m" * 500_000
    out = bounded(obj)
    assert size(out) <= MAX_DOCUMENT_BYTES
    assert out.status.message is not None
    assert len(out.status.message) <= MESSAGE_CHARS
    assert "more characters cut" in out.status.message
    assert all(
        e.message is not None and e.message.endswith("more characters cut)")
        for e in out.status.nodes.values()
    )
    assert len(out.status.nodes["n000"].reason or "") <= REASON_CHARS
    assert bounded(out) is out  # written twice, the same bytes


def test_a_document_that_would_not_fit_gets_its_messages_cut_harder() -> None:
    # Annotations nearly fill the document: 8 KiB a message would not fit 40 nodes.
    obj = space(40, "y" * 20_000, big="a" * (MAX_DOCUMENT_BYTES - 200_000))
    out = bounded(obj)
    assert size(out) <= MAX_DOCUMENT_BYTES
    assert all(len(e.message or "") <= TIGHT_MESSAGE_CHARS for e in out.status.nodes.values())
    assert bounded(out) is out


def test_fields_are_cut_as_the_write_cuts_them() -> None:
    entry = failed("z" * 10_000)
    fields = bounded_fields({"message": "q" * 9_000, "nodes": {"a": entry}, "state": "Ready"})
    assert len(fields["message"]) <= MESSAGE_CHARS
    assert len(fields["nodes"]["a"].message) <= MESSAGE_CHARS
    assert fields["state"] == "Ready"


async def test_a_write_refused_as_too_large_is_said_once_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It was an error with a traceback at every pass of the object, for good.
    too_large = DocumentTooLarge("the document is 2085844 bytes, over the limit")
    store = await refused_passes(caplog, lambda n: too_large, passes=12)
    said = [r for r in caplog.records if "2085844 bytes" in r.message]
    assert len(said) >= 11
    assert all(r.exc_info is None for r in said)
    # once for each of the three objects, then at debug level
    assert [r.levelno for r in said].count(logging.WARNING) == 3
    for name in ("a", "b", "c"):
        stored = await store.get(Kind.REALM, (name,))
        assert stored.status.reason == "DocumentTooLarge"
        assert "2085844 bytes" in (stored.status.message or "")


def test_a_nul_or_lone_surrogate_in_a_message_is_written_escaped() -> None:
    """A runtime's error quoting a value or a file name with a NUL (runc's env refusal) or a
    lone surrogate (a non-UTF-8 name, decoded with surrogateescape) made the status write and
    the failure's Event invalid: the cell's handler failed with a ValidationError at every
    retry (helper-234). Both are written as their escapes."""
    said = "runc: bad value 'a\x00b' in file '\udcff.conf'"
    escaped = "runc: bad value 'a\\x00b' in file '\\udcff.conf'"
    fields = bounded_fields({"message": said, "reason": "Bad\x00"})
    assert fields == {"message": escaped, "reason": "Bad\\x00"}
    assert failed(fields["message"]).message == escaped
    event = new_event(
        involved=InvolvedObject.of(Kind.CELL, ("r", "s", "st", "c"), "u-1"),
        reason="Failed",
        message=said,
        type=EventType.WARNING,
        at=datetime(2026, 12, 7, tzinfo=UTC),
        node="n1",
    )
    assert event.message == escaped
    assert cut_text("fine", 10) == "fine"
