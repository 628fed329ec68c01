"""A create proven by the API server's parse (``ValidatedDump``): the registry validates only
its own metadata, and stores exactly what the full validation would have stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from kukeon.api import AnyResource, Kind, key_of, parse_resource
from kukeon.store import EtcdConfig, Invalid, Registry
from kukeon.store import writes as writes_module
from kukeon.store.codec import ValidatedDump, label_of

from .test_codec_writes import DOCUMENTS, TRICKY_TEXT, document

CREATED = datetime(2026, 12, 4, 7, 0, 0, 123456, tzinfo=UTC)
UID = uuid.UUID("0c3c5b4e-8f5e-4f3e-9a57-6a1e1c1f0b4d")

NEW_DOCUMENTS = [
    *DOCUMENTS,
    document("Realm", metadata={"name": "r"}),  # sealed values: never the short path
    document(
        "Stack",
        metadata={"name": "st", "finalizers": ["kukeon.io/mine"], "labels": {"t": TRICKY_TEXT}},
        spec={"realmId": "r", "spaceId": "s"},
    ),
    document("Node", metadata={"name": "n1", "annotations": {"a": "b"}}),
    document(
        "CellSet",
        metadata={"name": "web", "annotations": {"kukeon.io/change-cause": "v1"}},
        spec={
            "realmId": "r",
            "spaceId": "s",
            "stackId": "st",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"id": "a", "image": "busybox", "env": ["V=1"]}]},
            },
        },
    ),
    # What a client may send to create: status and managed fields are the registry's.
    document(
        "Cell",
        metadata={
            "name": "with-status",
            "resourceVersion": "12",
            "deletionTimestamp": "2026-12-01T00:00:00Z",
        },
        spec={
            "realmId": "r",
            "spaceId": "s",
            "stackId": "st",
            "containers": [{"id": "a", "image": "busybox"}],
        },
        status={"state": "Ready", "message": "not the client's to say"},
    ),
]


def registry() -> Registry:
    """A registry that never connects: ``_new_document`` makes no call."""
    return Registry(client=None, config=EtcdConfig())  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def fixed_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uuid, "uuid4", lambda: UID)
    monkeypatch.setattr(writes_module, "utc_now", lambda: CREATED)


def new_document(res: AnyResource, proof: ValidatedDump | None) -> tuple[AnyResource, bytes]:
    kind = Kind(res.kind)
    store = registry()
    raw_key = store.key_for(kind, key_of(res)).encode()
    model, data, uid = store._new_document(kind, raw_key, res, label_of(kind, key_of(res)), proof)
    assert uid == str(UID)
    return model, data


@pytest.mark.parametrize("given", NEW_DOCUMENTS, ids=lambda d: str(d["metadata"]["name"]))
def test_a_proven_create_stores_what_the_full_validation_stores(given: dict[str, Any]) -> None:
    res = parse_resource(given)
    proof = ValidatedDump.of(res)
    assert proof.proves(res)
    full_model, full_data = new_document(res, None)
    short_model, short_data = new_document(res, proof)
    assert short_data == full_data
    assert short_model == full_model
    assert short_model.metadata.creation_timestamp == CREATED
    assert short_model.metadata.resource_version is None


def test_a_model_changed_after_its_proof_is_validated_in_full() -> None:
    res = parse_resource(DOCUMENTS[1])
    proof = ValidatedDump.of(res)
    # Neither an assignment nor model_copy(update=...) validates: the full validation must.
    res.metadata.labels["bad"] = "nul \x00 inside"
    assert not proof.proves(res)
    with pytest.raises(Invalid, match="NUL"):
        new_document(res, proof)
    copied = parse_resource(DOCUMENTS[1])
    proof = ValidatedDump.of(copied)
    changed = copied.model_copy(
        update={"metadata": copied.metadata.model_copy(update={"name": "Not A Label"})}
    )
    assert not proof.proves(changed)
    with pytest.raises(Invalid):
        new_document(changed, proof)


def test_a_proof_is_of_one_object_only() -> None:
    one, other = (parse_resource(DOCUMENTS[0]), parse_resource(DOCUMENTS[1]))
    assert not ValidatedDump.of(one).proves(other)
    renamed = parse_resource({**DOCUMENTS[0], "metadata": {"name": "s2", "labels": {"a": "b"}}})
    assert not ValidatedDump.of(one).proves(renamed)


def test_metadata_that_does_not_validate_falls_back_to_the_full_validation() -> None:
    res = parse_resource(DOCUMENTS[0])
    bad_finalizers: list[Any] = ["kukeon.io/x", 3]  # not text: only the registry could
    assert (
        registry()._codec.new_object(
            res,
            uid=str(UID),
            created=CREATED,
            finalizers=bad_finalizers,
        )
        is None
    )
