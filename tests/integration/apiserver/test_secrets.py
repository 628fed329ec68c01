"""Secrets and registry passwords through the API: values go in, never come out."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from kukeon.api import Kind, Realm, Secret
from kukeon.store import Registry
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    EDITOR_TOKEN,
    VIEWER_TOKEN,
    Api,
    Certs,
    realm_doc,
    running_api,
    tls_session,
)

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
SECRETS = f"{V}/realms/team/spaces/-/stacks/-/secrets"
MARKER = "api-marker-93e1f0"


@pytest.fixture
def registry(sealing_registry: Registry) -> Registry:
    """The API's registry holds a keyring, as kukeond's does (it seals and opens)."""
    return sealing_registry


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
    realm["spec"] = {
        "registryCredentials": [
            {"username": "bot", "password": MARKER, "serverAddress": "reg.example"}
        ]
    }
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


async def _digests_seen(api: Api, token: str) -> list[str | None]:
    """The digest of the `api` Secret's value in each read a caller makes: get, list (of a
    realm and across realms) and watch (its initial ADDED, then a MODIFIED)."""

    def digest(document: dict[str, Any]) -> str | None:
        (key,) = document["status"]["keys"]
        return cast(str | None, key.get("sha256"))

    async with tls_session(api, token) as session:
        seen = [digest(await _ok(await session.get(f"{SECRETS}/api")))]
        for path in (SECRETS, f"{V}/secrets"):
            seen += [digest(item) for item in (await _ok(await session.get(path)))["items"]]
        listed = await _ok(await session.get(SECRETS))
        params = {"watch": "true", "resourceVersion": "0", "timeoutSeconds": "3"}
        async with session.get(SECRETS, params=params) as watch:
            assert watch.status == 200
            first = json.loads(await watch.content.readline())
            assert first["type"] == "ADDED"
            seen.append(digest(first["object"]))
            patch = {"metadata": {"labels": {"round": listed["metadata"]["resourceVersion"]}}}
            async with tls_session(api, ADMIN_TOKEN) as admin:
                patched = await admin.patch(
                    f"{SECRETS}/api",
                    json=patch,
                    headers={"Content-Type": "application/merge-patch+json"},
                )
                await _ok(patched)
            async for line in watch.content:
                event = json.loads(line)
                if event["type"] == "MODIFIED":
                    seen.append(digest(event["object"]))
                    break
    return seen


@pytest.mark.parametrize("watch_cache", [True, False], ids=["watch-cache", "etcd"])
async def test_a_viewer_sees_no_digest_of_a_value(
    registry: Registry, certs: Certs, tokens_file: Path, watch_cache: bool
) -> None:
    """The sha256 of a short value gives it away offline: a viewer, who cannot use a
    Secret, reads its keys and sizes only; editors and admins (who can) keep the digest."""
    async with running_api(registry, certs, tokens_file, watch_cache=watch_cache) as api:
        connector = aiohttp.UnixConnector(path=str(api.socket))
        async with aiohttp.ClientSession(connector=connector, base_url="http://k") as http:
            await _setup(http)
        expected = hashlib.sha256(MARKER.encode()).hexdigest()
        assert await _digests_seen(api, VIEWER_TOKEN) == [None] * 5
        assert await _digests_seen(api, EDITOR_TOKEN) == [expected] * 5
        assert await _digests_seen(api, ADMIN_TOKEN) == [expected] * 5


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
