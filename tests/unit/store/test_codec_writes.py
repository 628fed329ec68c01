"""What a write stores and hands out: the bytes of a model, and the model kept for watches."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kukeon.api import AnyResource, Kind, key_of, parse_resource
from kukeon.store.codec import DocumentCodec
from kukeon.store.decoding import InvalidDocuments
from kukeon.store.keys import KeyLayout

TRICKY_TEXT = 'é ü \u2028 \u2029 \x01 \x1f \x7f " \\ / \t \n 😀 漢字'


def codec() -> DocumentCodec:
    return DocumentCodec(layout=KeyLayout("/t"), keyring=None, invalid=InvalidDocuments())


def document(kind: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "kukeon.io/v1beta1", "kind": kind, **fields}


DOCUMENTS = [
    document("Space", metadata={"name": "s", "labels": {"a": "b"}}, spec={"realmId": "r"}),
    document(
        "Cell",
        metadata={
            "name": "c",
            "labels": {"app": "x", "note": TRICKY_TEXT},
            "annotations": {"why": TRICKY_TEXT},
            "uid": "0c3c5b4e-8f5e-4f3e-9a57-6a1e1c1f0b4d",
            "creationTimestamp": "2026-12-04T07:00:00.123456+00:00",
            "generation": 1,
            "finalizers": ["kukeon.io/test"],
        },
        spec={
            "realmId": "r",
            "spaceId": "s",
            "stackId": "st",
            "containers": [
                {
                    "id": "main",
                    "image": "registry.local/app:1.0",
                    "command": "/bin/app",
                    "args": ["--text", TRICKY_TEXT, ""],
                    "env": [f"TEXT={TRICKY_TEXT}", "EMPTY="],
                }
            ],
        },
    ),
]


@pytest.mark.parametrize("given", DOCUMENTS, ids=lambda d: str(d["kind"]))
def test_encode_model_writes_the_bytes_of_the_canonical_document(given: dict[str, Any]) -> None:
    documents = codec()
    canonical, model = documents.validate(dict(given))
    assert documents.encode_model(model, label="x") == documents.encode(canonical, label="x")


def written_cell(documents: DocumentCodec) -> tuple[bytes, AnyResource, bytes]:
    canonical, model = documents.validate(dict(DOCUMENTS[1]))
    raw_key = KeyLayout("/t").key(Kind.CELL, key_of(model)).encode()
    return raw_key, model, documents.encode(canonical, label="x")


def test_a_written_version_is_shared_and_equal_to_its_stored_bytes_decoded() -> None:
    documents = codec()
    raw_key, model, data = written_cell(documents)
    returned = documents.written(Kind.CELL, raw_key, model, data, 42)
    shared = documents.shared_version(Kind.CELL, raw_key, 42)
    assert shared is not None
    assert shared == returned == documents.decode(Kind.CELL, raw_key, data, 42)
    assert shared.metadata.resource_version == "42"
    # The caller's metadata is its own: what it changes before its next write stays out
    # of the version every watcher shares.
    returned.metadata.labels["mine"] = "yes"
    returned.metadata.annotations["mine"] = "yes"
    returned.metadata.finalizers.append("kukeon.io/mine")
    returned.metadata.generation = 7
    assert "mine" not in shared.metadata.labels
    assert "mine" not in shared.metadata.annotations
    assert shared.metadata.finalizers == ["kukeon.io/test"]
    assert shared.metadata.generation == 1


def test_a_written_version_clears_an_invalid_record_of_its_key() -> None:
    documents = codec()
    raw_key, model, data = written_cell(documents)
    documents.invalid.seen(Kind.CELL, raw_key, 40, "junk written by hand")
    assert documents.invalid.counts()[Kind.CELL] == 1
    documents.written(Kind.CELL, raw_key, model, data, 42)
    assert documents.invalid.counts()[Kind.CELL] == 0


def test_a_kind_with_sealed_values_is_never_shared() -> None:
    documents = codec()
    canonical, model = documents.validate(document("Realm", metadata={"name": "r"}))
    raw_key = KeyLayout("/t").key(Kind.REALM, ("r",)).encode()
    documents.written(Kind.REALM, raw_key, model, documents.encode(canonical, label="x"), 3)
    assert documents.shared_version(Kind.REALM, raw_key, 3) is None


def test_parse_then_encode_model_round_trips() -> None:
    documents = codec()
    model = documents.validated(dict(DOCUMENTS[1]))
    data = documents.encode_model(model, label="x")
    assert documents.encode_model(parse_resource(json.loads(data)), label="x") == data
