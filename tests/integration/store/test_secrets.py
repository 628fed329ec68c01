"""Secrets and registry passwords in a real etcd: sealed at rest, opened for kukeond only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aetcd import rpc

from kukeon.api import Kind, Realm, Secret, parse_resource, to_document
from kukeon.store import ChildrenExist, Invalid, Registry
from kukeon.store.encryption import write_key_file
from kukeon.store.keys import range_end

from .objects import realm, space

pytestmark = pytest.mark.integration

MARKER = "s3cr3t-marker-4b1d"


@pytest.fixture
def sealed(sealing_registry: Registry) -> Registry:
    return sealing_registry


def secret(realm_id: str, name: str, space_id: str | None = None, **body: Any) -> Secret:
    metadata = {"name": name, "realm": realm_id}
    if space_id:
        metadata["space"] = space_id
    parsed = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Secret", "metadata": metadata, **body}
    )
    assert isinstance(parsed, Secret)
    return parsed


async def raw_values(registry: Registry) -> list[bytes]:
    prefix = registry.key_prefix.encode() + b"/"
    request = rpc.RangeRequest(key=prefix, range_end=range_end(prefix))
    reply = await registry.client.kvstub.Range(request, metadata=registry.client.metadata)
    return [bytes(kv.value) for kv in reply.kvs]


async def test_a_secret_is_sealed_in_etcd_and_opened_by_the_registry(sealed: Registry) -> None:
    await sealed.create(realm("r"))
    created = await sealed.create(secret("r", "api", stringData={"token": MARKER}))
    assert isinstance(created, Secret)
    assert created.value("token") == MARKER.encode()
    assert MARKER not in json.dumps(to_document(created))
    assert [k.name for k in created.status.keys] == ["token"]
    for value in await raw_values(sealed):
        assert MARKER.encode() not in value
    got = await sealed.get(Kind.SECRET, ("r", "-", "-", "api"))
    assert isinstance(got, Secret)
    assert got.value("token") == MARKER.encode()
    listed = await sealed.list(Kind.SECRET, ("r",))
    assert [s.metadata.name for s in listed.items] == ["api"]


async def test_an_update_without_values_keeps_them_and_with_values_replaces_them(
    sealed: Registry,
) -> None:
    await sealed.create(realm("r"))
    created = await sealed.create(secret("r", "api", stringData={"token": MARKER}))
    labelled = created.model_copy(
        update={
            "data": None,
            "string_data": None,
            "metadata": created.metadata.model_copy(update={"labels": {"a": "b"}}),
        }
    )
    kept = await sealed.update(labelled)
    assert isinstance(kept, Secret)
    assert kept.value("token") == MARKER.encode()
    assert kept.metadata.generation == created.metadata.generation
    replaced = await sealed.update(
        kept.model_copy(update={"data": None, "string_data": {"token": "new"}})
    )
    assert isinstance(replaced, Secret)
    assert replaced.value("token") == b"new"
    assert replaced.metadata.generation == kept.metadata.generation + 1
    # The same values again: no write at all.
    again = await sealed.update(replaced.model_copy(update={"string_data": {"token": "new"}}))
    assert again.metadata.resource_version == replaced.metadata.resource_version
    with pytest.raises(Invalid, match="written by the registry"):
        await sealed.update_status(replaced)


async def test_secrets_are_children_of_their_realm_and_space(sealed: Registry) -> None:
    await sealed.create(realm("r"))
    await sealed.create(space("r", "s"))
    await sealed.create(secret("r", "in-space", "s", stringData={"k": "v"}))
    with pytest.raises(ChildrenExist):
        await sealed.delete(Kind.SPACE, ("r", "s"))
    await sealed.delete(Kind.REALM, ("r",), cascade=True)
    assert (await sealed.list(Kind.SECRET)).items == []


async def test_a_secret_copied_under_another_key_does_not_open(sealed: Registry) -> None:
    await sealed.create(realm("r"))
    await sealed.create(secret("r", "a", stringData={"k": MARKER}))
    await sealed.create(secret("r", "b", stringData={"k": "other"}))
    key_a = sealed.key_for(Kind.SECRET, ("r", "-", "-", "a")).encode()
    key_b = sealed.key_for(Kind.SECRET, ("r", "-", "-", "b")).encode()
    stored_a = json.loads((await sealed.client.get(key_a)).value)
    stored_b = json.loads((await sealed.client.get(key_b)).value)
    stored_b["encryptedData"] = stored_a["encryptedData"]
    await sealed.client.put(key_b, json.dumps(stored_b).encode())
    names = [s.metadata.name for s in (await sealed.list(Kind.SECRET)).items]
    assert names == ["a"]  # b is skipped as invalid, never opened with a's value


async def test_inline_registry_passwords_are_sealed_and_survive_a_redacted_update(
    sealed: Registry,
) -> None:
    doc = to_document(realm("r"))
    doc["spec"]["registryCredentials"] = [{"username": "u", "password": MARKER}]
    parsed = parse_resource(doc)
    created = await sealed.create(parsed)
    assert isinstance(created, Realm)
    assert created.spec.registry_credentials[0].password == MARKER
    for value in await raw_values(sealed):
        assert MARKER.encode() not in value
    # What a client sends back after a get: "***", and a new label.
    sent_back = parse_resource(to_document(created))
    sent_back.metadata.labels["x"] = "y"
    updated = await sealed.update(sent_back)
    assert isinstance(updated, Realm)
    assert updated.spec.registry_credentials[0].password == MARKER
    # A status write leaves the sealed password alone.
    status = updated.status.model_copy(update={"message": "hello"})
    after_status = await sealed.update_status(updated.model_copy(update={"status": status}))
    assert isinstance(after_status, Realm)
    assert after_status.spec.registry_credentials[0].password == MARKER


async def test_rotation_reseals_everything_and_values_stay(sealed: Registry) -> None:
    keyring = sealed.keyring
    assert keyring is not None
    assert keyring.path is not None
    doc = to_document(realm("r"))
    doc["spec"]["registryCredentials"] = [{"username": "u", "password": "pw"}]
    parsed = parse_resource(doc)
    await sealed.create(parsed)
    await sealed.create(secret("r", "api", stringData={"token": MARKER}))
    old = keyring.current
    assert await sealed.key_ids_in_use() == {old: 2}
    rotated = keyring.rotated()
    write_key_file(keyring.path, rotated)
    keyring.replace(rotated)
    rewritten, failed = await sealed.reseal()
    assert (rewritten, failed) == (2, [])
    assert await sealed.key_ids_in_use() == {keyring.current: 2}
    assert await sealed.reseal() == (0, [])
    keyring.replace(keyring.pruned(set()))
    got = await sealed.get(Kind.SECRET, ("r", "-", "-", "api"))
    assert isinstance(got, Secret)
    assert got.value("token") == MARKER.encode()
    got_realm = await sealed.get(Kind.REALM, ("r",))
    assert isinstance(got_realm, Realm)
    assert got_realm.spec.registry_credentials[0].password == "pw"


async def test_without_a_keyring_secrets_cannot_be_written_and_read_without_values(
    sealed: Registry, registry: Registry
) -> None:
    del sealed
    await registry.create(realm("r"))
    with pytest.raises(Invalid, match="no encryption key"):
        await registry.create(secret("r", "api", stringData={"token": MARKER}))


async def test_password_secret_refs_are_read_from_the_realms_secrets(sealed: Registry) -> None:
    from kukeon.controllers.cell import registry_credentials
    from kukeon.controllers.cellfiles import SecretUnavailableError

    doc = to_document(realm("r"))
    doc["spec"]["registryCredentials"] = [
        {
            "username": "bot",
            "serverAddress": "reg.example",
            "passwordSecretRef": {"name": "reg", "key": "pw"},
        },
        {"username": "old", "password": "inline"},
    ]
    created = await sealed.create(parse_resource(doc))
    assert isinstance(created, Realm)
    with pytest.raises(SecretUnavailableError, match=r"registryCredentials\[0\].*'reg'.*'pw'"):
        await registry_credentials(sealed, created)
    # A space's Secret of that name is not the realm's: registry credentials are realm-wide.
    await sealed.create(space("r", "s"))
    await sealed.create(secret("r", "reg", "s", stringData={"pw": "wrong"}))
    with pytest.raises(SecretUnavailableError):
        await registry_credentials(sealed, created)
    await sealed.create(secret("r", "reg", stringData={"pw": MARKER}))
    credentials = await registry_credentials(sealed, created)
    assert [(c.server_address, c.username, c.password) for c in credentials] == [
        ("reg.example", "bot", MARKER),
    ]  # "old" names no registry: sent to none (stored before serverAddress was required)
