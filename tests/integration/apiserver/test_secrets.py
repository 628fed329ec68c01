"""Secrets and registry passwords through the API: values go in, never come out."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind, Realm, Secret
from kukeon.store import Registry
from kukeon.store.encryption import Keyring
from tests.fixtures.etcd import EtcdServer
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    EDITOR_TOKEN,
    VIEWER_TOKEN,
    Api,
    realm_doc,
    tls_session,
)

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
SECRETS = f"{V}/realms/team/spaces/-/stacks/-/secrets"
MARKER = "api-marker-93e1f0"


@pytest.fixture
async def registry(
    etcd_server: EtcdServer, etcd_key_prefix: str, tmp_path: Path
) -> AsyncIterator[Registry]:
    """The API's registry holds a keyring, as kukeond's does (it seals and opens)."""
    keyring, _ = Keyring.load_or_create(tmp_path / "encryption-keys.yaml")
    connected = await Registry.connect(
        etcd_server.config(key_prefix=etcd_key_prefix), keyring=keyring
    )
    try:
        yield connected
    finally:
        with contextlib.suppress(Exception):
            await connected.client.delete_prefix(etcd_key_prefix.encode() + b"/")
        await connected.close()


async def _ok(response: aiohttp.ClientResponse, code: int = 200) -> Any:
    text = await response.text()
    assert response.status == code, text
    assert MARKER not in text
    assert base64.b64encode(MARKER.encode()).decode() not in text
    return json.loads(text)


def _secret(name: str, **body: Any) -> dict[str, Any]:
    return {"apiVersion": "kukeon.io/v1beta1", "kind": "Secret", "metadata": {"name": name}, **body}


async def _setup(http: aiohttp.ClientSession) -> None:
    realm = realm_doc("team")
    realm["spec"] = {"registryCredentials": [{"username": "bot", "password": MARKER}]}
    await _ok(await http.post(f"{V}/realms", json=realm), 201)
    created = await _ok(
        await http.post(SECRETS, json=_secret("api", stringData={"token": MARKER})), 201
    )
    assert created["metadata"]["realm"] == "team"
    assert "space" not in created["metadata"]
    (key,) = created["status"]["keys"]
    assert key["name"] == "token"
    assert key["size"] == len(MARKER)


async def test_no_response_of_any_role_carries_a_value(
    api: Api, http: aiohttp.ClientSession
) -> None:
    await _setup(http)
    for token in (ADMIN_TOKEN, VIEWER_TOKEN, EDITOR_TOKEN):
        async with tls_session(api, token) as session:
            got = await _ok(await session.get(f"{SECRETS}/api"))
            assert "data" not in got
            assert "stringData" not in got
            listed = await _ok(await session.get(f"{V}/secrets"))
            assert [item["metadata"]["name"] for item in listed["items"]] == ["api"]
            realm = await _ok(await session.get(f"{V}/realms/team"))
            assert realm["spec"]["registryCredentials"][0]["password"] == "***"
            async with session.get(
                f"{V}/secrets", params={"watch": "true", "timeoutSeconds": "1"}
            ) as watch:
                text = await watch.text()
            assert watch.status == 200
            assert '"api"' in text
            assert MARKER not in text
    # And etcd holds no value either.
    registry = api.registry
    for kind in (Kind.SECRET, Kind.REALM):
        for item in (await registry.list(kind)).items:
            raw = await registry.client.get(
                registry.key_for(kind, (*_scope(item), item.metadata.name)).encode()
            )
            assert MARKER.encode() not in raw.value


def _scope(item: Any) -> tuple[str, ...]:
    if isinstance(item, Secret):
        return item.metadata.scope()
    return ()


async def test_a_round_trip_of_what_get_returns_keeps_the_values(
    api: Api, http: aiohttp.ClientSession
) -> None:
    await _setup(http)
    secret = await _ok(await http.get(f"{SECRETS}/api"))
    secret["metadata"]["labels"] = {"edited": "yes"}
    await _ok(await http.put(f"{SECRETS}/api", json=secret))
    realm = await _ok(await http.get(f"{V}/realms/team"))
    realm["metadata"]["labels"] = {"edited": "yes"}
    await _ok(await http.put(f"{V}/realms/team", json=realm))
    stored = await api.registry.get(Kind.SECRET, ("team", "-", "-", "api"))
    assert isinstance(stored, Secret)
    assert stored.metadata.labels == {"edited": "yes"}
    assert stored.value("token") == MARKER.encode()
    stored_realm = await api.registry.get(Kind.REALM, ("team",))
    assert isinstance(stored_realm, Realm)
    assert stored_realm.spec.registry_credentials[0].password == MARKER


async def test_a_patch_of_values_merges_with_the_stored_ones(
    api: Api, http: aiohttp.ClientSession
) -> None:
    await _setup(http)
    patched = await _ok(
        await http.patch(
            f"{SECRETS}/api",
            data=json.dumps({"stringData": {"extra": "x"}}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
    )
    assert [k["name"] for k in patched["status"]["keys"]] == ["extra", "token"]
    stored = await api.registry.get(Kind.SECRET, ("team", "-", "-", "api"))
    assert isinstance(stored, Secret)
    assert stored.values() == {"token": MARKER.encode(), "extra": b"x"}


async def test_secret_scopes_come_from_the_url(api: Api, http: aiohttp.ClientSession) -> None:
    await _ok(await http.post(f"{V}/realms", json=realm_doc("team")), 201)
    mismatch = _secret("x", stringData={"k": "v"})
    mismatch["metadata"]["space"] = "other"
    response = await http.post(SECRETS, json=mismatch)
    assert response.status == 400
    assert "metadata.space" in await response.text()
    # A space-scoped secret needs its space.
    missing = await http.post(
        f"{V}/realms/team/spaces/nope/stacks/-/secrets", json=_secret("x", stringData={})
    )
    assert missing.status == 404
    # Viewers may not write, editors only in their realms.
    async with tls_session(api, VIEWER_TOKEN) as viewer:
        refused = await viewer.post(SECRETS, json=_secret("y", stringData={"k": "v"}))
        assert refused.status == 403
    async with tls_session(api, EDITOR_TOKEN) as editor:
        await _ok(await editor.post(SECRETS, json=_secret("y", stringData={"k": "v"})), 201)
        other = await editor.post(
            f"{V}/realms/other/spaces/-/stacks/-/secrets", json=_secret("z", stringData={})
        )
        assert other.status == 403
