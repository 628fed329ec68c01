"""Encryption at rest: the key file, sealing and opening, tampering, rotation, the model."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from kukeon.api import InvalidResource, Realm, Secret, parse_resource, to_document
from kukeon.store.encryption import (
    EncryptionError,
    Keyring,
    SealingError,
    parse_key_file,
    reseal_document,
    seal_passwords,
    seal_secret,
    unseal_document,
    write_key_file,
)

KEY = b"/kukeon/registry/secrets/r/-/-/api"
MARKER = "marker-7f3a9c"


def _keyring(tmp_path: Path) -> Keyring:
    keyring, created = Keyring.load_or_create(tmp_path / "keys" / "encryption-keys.yaml")
    assert created
    return keyring


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "encryption-keys.yaml"
    first, created = Keyring.load_or_create(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = Keyring.load_or_create(path)
    assert not created_again
    assert again.current == first.current
    envelope = first.seal(b"v", aad=KEY)
    assert again.open(envelope, aad=KEY) == b"v"


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "encryption-keys.yaml"
    Keyring.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(EncryptionError, match="chmod 600"):
        Keyring.load_or_create(path)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[]", "mapping"),
        ("current: a\nkeys: []", "non-empty"),
        ("current: a\nkeys: [{id: a, secret: '!!'}]", "base64"),
        ("current: a\nkeys: [{id: a, secret: " + base64.b64encode(b"x").decode() + "}]", "32"),
        (
            "current: b\nkeys: [{id: a, secret: " + base64.b64encode(b"x" * 32).decode() + "}]",
            "current",
        ),
    ],
)
def test_malformed_key_files_say_why(text: str, why: str) -> None:
    with pytest.raises(EncryptionError, match=why):
        parse_key_file(text, source="f.yaml")


def test_round_trip_and_no_plaintext_in_the_envelope(tmp_path: Path) -> None:
    keyring = _keyring(tmp_path)
    envelope = keyring.seal(MARKER.encode(), aad=KEY)
    assert set(envelope) == {"keyId", "nonce", "ciphertext"}
    assert envelope["keyId"] == keyring.current
    assert MARKER not in json.dumps(envelope)
    assert keyring.open(envelope, aad=KEY) == MARKER.encode()
    # A fresh nonce every time: equal values do not give equal ciphertexts.
    assert keyring.seal(MARKER.encode(), aad=KEY)["ciphertext"] != envelope["ciphertext"]


def test_tampering_is_detected(tmp_path: Path) -> None:
    keyring = _keyring(tmp_path)
    envelope = keyring.seal(MARKER.encode(), aad=KEY)
    raw = bytearray(base64.b64decode(envelope["ciphertext"]))
    raw[0] ^= 1
    altered = {**envelope, "ciphertext": base64.b64encode(bytes(raw)).decode()}
    with pytest.raises(EncryptionError, match="does not authenticate"):
        keyring.open(altered, aad=KEY)
    with pytest.raises(EncryptionError, match="not a sealed value"):
        keyring.open({"keyId": keyring.current}, aad=KEY)


def test_a_ciphertext_moved_to_another_key_does_not_open(tmp_path: Path) -> None:
    keyring = _keyring(tmp_path)
    envelope = keyring.seal(MARKER.encode(), aad=KEY)
    with pytest.raises(EncryptionError, match="does not authenticate"):
        keyring.open(envelope, aad=b"/kukeon/registry/secrets/other/-/-/api")


def test_an_unknown_key_id_is_looked_up_in_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "encryption-keys.yaml"
    reader, _ = Keyring.load_or_create(path)
    writer = Keyring.load(path)
    rotated = writer.rotated()
    write_key_file(path, rotated)
    writer.replace(rotated)
    envelope = writer.seal(b"v", aad=KEY)
    assert envelope["keyId"] != reader.current
    assert reader.open(envelope, aad=KEY) == b"v"  # read the file again, found the key
    stranger = Keyring(Keyring.load(path).rotated())
    with pytest.raises(EncryptionError, match="not in the key file"):
        reader.open(stranger.seal(b"v", aad=KEY), aad=KEY)


def test_rotation_reseals_with_the_new_key_and_keeps_the_values(tmp_path: Path) -> None:
    keyring = _keyring(tmp_path)
    old = keyring.current
    secret = _secret(stringData={"token": MARKER})
    document = to_document(secret)
    seal_secret(KEY, document, secret.values(), None, keyring)
    assert document["encryptedData"]["keyId"] == old
    keyring.replace(keyring.rotated())
    assert keyring.current != old
    assert reseal_document("Secret", KEY, document, keyring)
    assert document["encryptedData"]["keyId"] == keyring.current
    assert not reseal_document("Secret", KEY, document, keyring)  # nothing left to do
    keyring.replace(keyring.pruned(set()))
    assert keyring.key_ids == (keyring.current,)
    unseal_document("Secret", KEY, document, keyring)
    assert parse_resource(document).value("token") == MARKER.encode()  # type: ignore[attr-defined]


def _secret(**body: object) -> Secret:
    doc = {"apiVersion": "kukeon.io/v1beta1", "kind": "Secret"}
    doc["metadata"] = {"name": "api", "realm": "r"}  # type: ignore[assignment]
    parsed = parse_resource({**doc, **body})
    assert isinstance(parsed, Secret)
    return parsed


def test_a_secret_never_serialises_its_values() -> None:
    secret = _secret(data={"a": base64.b64encode(b"x").decode()}, stringData={"token": MARKER})
    assert secret.values() == {"a": b"x", "token": MARKER.encode()}
    for dumped in (to_document(secret), secret.model_dump(), secret.model_dump_json()):
        assert MARKER not in str(dumped)
        assert "eA==" not in str(dumped)


def test_sealed_secret_documents_show_keys_sizes_and_digests(tmp_path: Path) -> None:
    keyring = _keyring(tmp_path)
    secret = _secret(stringData={"token": MARKER})
    document = to_document(secret)
    seal_secret(KEY, document, secret.values(), None, keyring)
    assert MARKER not in json.dumps(document)
    (entry,) = document["status"]["keys"]
    assert entry["name"] == "token"
    assert entry["size"] == len(MARKER)
    assert len(entry["sha256"]) == 64
    with pytest.raises(SealingError, match="no encryption key"):
        seal_secret(KEY, to_document(secret), secret.values(), None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": {"a/b": "eA=="}}, "data[a/b]"),
        ({"data": {"..": "eA=="}}, "data[..]"),
        ({"data": {"a": "not base64!"}}, "data"),
        ({"type": "kubernetes.io/tls"}, "type"),
        ({"stringData": {"big": "x" * (1024 * 1024 + 1)}}, ""),
    ],
)
def test_secret_validation(body: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidResource) as caught:
        _secret(**body)
    assert any(cause.field == field for cause in caught.value.causes), caught.value.causes


def test_a_stack_scoped_secret_needs_its_space() -> None:
    with pytest.raises(InvalidResource, match=r"metadata\.stack: requires metadata\.space"):
        parse_resource(
            {
                "kind": "Secret",
                "apiVersion": "v1beta1",
                "metadata": {"name": "a", "realm": "r", "stack": "t"},
            }
        )


def _realm(*credentials: dict[str, object]) -> Realm:
    realm = parse_resource(
        {
            "kind": "Realm",
            "apiVersion": "v1beta1",
            "metadata": {"name": "r"},
            "spec": {"registryCredentials": list(credentials)},
        }
    )
    assert isinstance(realm, Realm)
    return realm


def test_inline_passwords_are_redacted_sealed_and_kept_on_a_redacted_update(tmp_path: Path) -> None:
    keyring = _keyring(tmp_path)
    key = b"/kukeon/registry/realms/r"
    realm = _realm({"username": "u", "password": MARKER, "serverAddress": "reg.example"})
    document = to_document(realm)
    assert document["spec"]["registryCredentials"][0]["password"] == "***"
    seal_passwords(key, document, [MARKER], None, keyring)
    assert MARKER not in json.dumps(document)
    assert "password" not in document["spec"]["registryCredentials"][0]
    # An update that sends "***" back keeps the stored envelope.
    update = to_document(realm)
    seal_passwords(key, update, ["***"], document, keyring)
    assert update == document
    # The same password again keeps the envelope too: no write for a no-op update.
    same = to_document(realm)
    seal_passwords(key, same, [MARKER], document, keyring)
    assert same == document
    unseal_document("Realm", key, same, keyring)
    assert same["spec"]["registryCredentials"][0]["password"] == MARKER
    # Without a keyring the password reads as "***".
    redacted = json.loads(json.dumps(document))
    unseal_document("Realm", key, redacted, None)
    assert redacted["spec"]["registryCredentials"][0]["password"] == "***"


def test_a_redacted_password_with_nothing_stored_is_refused(tmp_path: Path) -> None:
    keyring = _keyring(tmp_path)
    document = to_document(_realm({"username": "u", "password": "***"}))
    with pytest.raises(SealingError, match="no password is stored"):
        seal_passwords(b"/k", document, ["***"], None, keyring)


def test_a_password_moved_to_another_credential_does_not_open(tmp_path: Path) -> None:
    keyring = _keyring(tmp_path)
    key = b"/kukeon/registry/realms/r"
    document = to_document(
        _realm({"username": "u", "password": MARKER}, {"username": "v", "password": "x"})
    )
    seal_passwords(key, document, [MARKER, "x"], None, keyring)
    first, second = document["spec"]["registryCredentials"]
    second["encryptedPassword"] = first["encryptedPassword"]
    with pytest.raises(EncryptionError, match="does not authenticate"):
        unseal_document("Realm", key, document, keyring)


def test_credentials_take_exactly_one_password_source() -> None:
    with pytest.raises(InvalidResource, match="exactly one of password or passwordSecretRef"):
        _realm({"username": "u"})
    with pytest.raises(InvalidResource, match="exactly one of password or passwordSecretRef"):
        _realm({"username": "u", "password": "p", "passwordSecretRef": {"name": "reg", "key": "p"}})
    realm = _realm({"username": "u", "passwordSecretRef": {"name": "reg", "key": "p"}})
    ref = realm.spec.registry_credentials[0].password_secret_ref
    assert ref is not None
    assert (ref.name, ref.key) == ("reg", "p")
