"""A watch event's version before (``WatchEvent.prior``) for a kind with sealed values,
which is never kept decoded: read again from etcd's previous value with its values left
sealed, so a selective watch can judge it and no plaintext is opened for it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kukeon.api import AnyResource, Kind, Realm, Secret, key_of, parse_resource, to_document
from kukeon.store.codec import DocumentCodec
from kukeon.store.decoding import InvalidDocuments
from kukeon.store.encryption import Keyring
from kukeon.store.keys import KeyLayout

MARKER = "prior-marker-5d1c"


def _stored(codec: DocumentCodec, layout: KeyLayout, res: AnyResource) -> SimpleNamespace:
    """An etcd key-value (as ``prev_kv``) holding ``res`` as the registry stores it."""
    kind = Kind(res.kind)
    raw_key = layout.key(kind, key_of(res)).encode()
    canonical = to_document(res)
    codec.seal(kind, raw_key, canonical, res, None, label="test")
    value = codec.encode(canonical, label="test")
    assert MARKER.encode() not in value
    return SimpleNamespace(key=raw_key, value=value, mod_revision=41)


def _parsed(document: dict[str, Any]) -> AnyResource:
    return parse_resource({"apiVersion": "kukeon.io/v1beta1", **document})


def test_a_sealed_kinds_prior_has_its_labels_and_no_values(tmp_path: Path) -> None:
    keyring, _ = Keyring.load_or_create(tmp_path / "encryption-keys.yaml")
    layout = KeyLayout("/t")
    codec = DocumentCodec(layout=layout, keyring=keyring, invalid=InvalidDocuments())
    secret = _parsed(
        {
            "kind": "Secret",
            "metadata": {"name": "s", "realm": "r", "labels": {"rank": "5"}},
            "stringData": {"token": MARKER},
        }
    )
    realm = _parsed(
        {
            "kind": "Realm",
            "metadata": {"name": "r", "labels": {"rank": "6"}},
            "spec": {"registryCredentials": [{"username": "bot", "password": MARKER}]},
        }
    )
    for res in (secret, realm):
        kv = _stored(codec, layout, res)
        prior = codec.prior_version(Kind(res.kind), kv)
        assert prior is not None
        assert prior.metadata.labels == res.metadata.labels
        assert prior.metadata.resource_version == "41"
        assert MARKER not in json.dumps(to_document(prior))
        assert MARKER not in repr(prior)
        if isinstance(prior, Secret):
            assert prior.values() is None
        else:
            assert isinstance(prior, Realm)
            assert prior.spec.registry_credentials[0].password == "***"
        # What a reader of that version is handed is still opened.
        opened = codec.decode(Kind(res.kind), kv.key, kv.value, kv.mod_revision)
        if isinstance(opened, Secret):
            assert opened.values() == {"token": MARKER.encode()}
        else:
            assert isinstance(opened, Realm)
            assert opened.spec.registry_credentials[0].password == MARKER


def test_an_unsealed_kinds_prior_is_only_the_one_kept(tmp_path: Path) -> None:
    layout = KeyLayout("/t")
    codec = DocumentCodec(layout=layout, keyring=None, invalid=InvalidDocuments())
    space = _parsed(
        {"kind": "Space", "metadata": {"name": "s", "labels": {"a": "b"}}, "spec": {"realmId": "r"}}
    )
    kv = _stored(codec, layout, space)
    assert codec.prior_version(Kind.SPACE, kv) is None  # decoding it is not paid for
    codec.share(Kind.SPACE, kv.key, kv.mod_revision, space)
    assert codec.prior_version(Kind.SPACE, kv) is space
