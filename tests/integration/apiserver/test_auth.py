"""TCP needs TLS and a bearer token; roles limit verbs and realms; refusals write nothing."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from kukeon.apiserver import ApiServerError, ApiSettings, serve_api
from kukeon.store import Registry
from tests.fixtures.services import free_tcp_port
from tests.integration.apiserver.conftest import (
    ADMIN_TOKEN,
    EDITOR_TOKEN,
    VIEWER_TOKEN,
    Api,
    Certs,
    realm_doc,
    space_doc,
    tls_session,
)

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


async def _names(http: aiohttp.ClientSession, path: str) -> list[str]:
    body = await (await http.get(path)).json()
    return [item["metadata"]["name"] for item in body["items"]]


async def test_no_token_and_wrong_token_are_401_and_write_nothing(
    api: Api, http: aiohttp.ClientSession
) -> None:
    for token in (None, "wrong-token-" + "x" * 20):
        async with tls_session(api, token) as remote:
            response = await remote.post(f"{V}/realms", json=realm_doc("sneaky"))
            body = await response.json()
            assert response.status == 401, body
            assert body["reason"] == "Unauthorized"
            assert (await remote.get(f"{V}/realms")).status == 401
    async with tls_session(api, None) as remote:
        bad_scheme = await remote.get(
            f"{V}/realms", headers={"Authorization": f"Basic {ADMIN_TOKEN}"}
        )
        assert bad_scheme.status == 401
        assert (await remote.get("/healthz")).status == 200  # probes need no token
    assert await _names(http, f"{V}/realms") == []


async def test_admin_token_may_do_everything(api: Api) -> None:
    async with tls_session(api, ADMIN_TOKEN) as remote:
        assert (await remote.post(f"{V}/realms", json=realm_doc("r"))).status == 201
        assert (await remote.get(f"{V}/realms/r")).status == 200
        assert (await remote.delete(f"{V}/realms/r")).status in (200, 202)


async def test_viewer_reads_but_never_writes(api: Api, http: aiohttp.ClientSession) -> None:
    await http.post(f"{V}/realms", json=realm_doc("r"))
    async with tls_session(api, VIEWER_TOKEN) as remote:
        assert await _names(remote, f"{V}/realms") == ["r"]
        assert (await remote.get(f"{V}/realms/r")).status == 200
        for response in (
            await remote.post(f"{V}/realms", json=realm_doc("new")),
            await remote.put(f"{V}/realms/r", json=realm_doc("r", x="1")),
            await remote.patch(
                f"{V}/realms/r",
                data=b'{"metadata":{"labels":{"x":"1"}}}',
                headers={"Content-Type": "application/merge-patch+json"},
            ),
            await remote.delete(f"{V}/realms/r"),
        ):
            body = await response.json()
            assert response.status == 403, body
            assert body["reason"] == "Forbidden"
            assert "viewer" in body["message"]
    assert await _names(http, f"{V}/realms") == ["r"]
    stored = await (await http.get(f"{V}/realms/r")).json()
    assert stored["metadata"]["labels"] == {}
    assert "deletionTimestamp" not in stored["metadata"]


async def test_editor_is_confined_to_its_realms(api: Api, http: aiohttp.ClientSession) -> None:
    await http.post(f"{V}/realms", json=realm_doc("team"))
    await http.post(f"{V}/realms", json=realm_doc("other"))
    async with tls_session(api, EDITOR_TOKEN) as remote:
        made = await remote.post(f"{V}/realms/team/spaces", json=space_doc("dev"))
        assert made.status == 201
        outside = await remote.post(f"{V}/realms/other/spaces", json=space_doc("dev"))
        body = await outside.json()
        assert outside.status == 403, body
        assert "other" in body["message"]
        assert (await remote.post(f"{V}/realms", json=realm_doc("brand-new"))).status == 403
        assert (await remote.delete(f"{V}/realms/other")).status == 403
        assert (await remote.get(f"{V}/realms/other")).status == 403
        status_write = await remote.patch(
            f"{V}/realms/team/status",
            data=b'{"status":{"state":"Ready"}}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert status_write.status == 403
        # cross-realm reads show only the editor's realms
        assert await _names(remote, f"{V}/realms") == ["team"]
        assert await _names(remote, f"{V}/spaces") == ["dev"]
    assert await _names(http, f"{V}/realms/other/spaces") == []
    assert sorted(await _names(http, f"{V}/realms")) == ["other", "team"]


async def test_metrics_are_for_the_roles_that_read_every_realm(api: Api) -> None:
    """/metrics names every realm's objects (kukeond's cell, space and set series): an
    editor, who sees only its realms elsewhere, read them all there (200)."""
    for token in (ADMIN_TOKEN, VIEWER_TOKEN):
        async with tls_session(api, token) as remote:
            response = await remote.get("/metrics")
            assert response.status == 200, await response.text()
            assert "kukeon_apiserver_requests_total" in await response.text()
    async with tls_session(api, EDITOR_TOKEN) as remote:
        response = await remote.get("/metrics")
        body = await response.json()
        assert response.status == 403, body
        assert body["reason"] == "Forbidden"
        assert "'eddie' (editor) may not read /metrics" in body["message"]


async def test_tcp_is_tls_only(api: Api) -> None:
    plain = api.https.replace("https://", "http://")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get(
                f"{plain}/healthz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
        untrusted = ssl.create_default_context()  # the system roots do not know our CA
        with pytest.raises(aiohttp.ClientError):
            await session.get(f"{api.https}/healthz", ssl=untrusted)


async def test_tcp_listener_refuses_to_start_without_tls_or_tokens(
    registry: Registry, certs: Certs, tokens_file: Path, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_tcp_port()}"
    for missing in ("tls_cert_file", "tls_key_file", "tokens_file"):
        options = {
            "socket_path": None,
            "tcp_address": address,
            "tls_cert_file": certs.cert,
            "tls_key_file": certs.key,
            "tokens_file": tokens_file,
        }
        options[missing] = None
        with pytest.raises(ApiServerError, match="requires TLS and tokens"):
            await serve_api(ApiSettings(**options), registry)
    broken = tmp_path / "tokens.yaml"
    broken.write_text("tokens:\n  - token: short\n    user: x\n    role: boss\n")
    with pytest.raises(ApiServerError, match="tokens"):
        await serve_api(
            ApiSettings(
                socket_path=None,
                tcp_address=address,
                tls_cert_file=certs.cert,
                tls_key_file=certs.key,
                tokens_file=broken,
            ),
            registry,
        )


async def test_unix_socket_mode_group_and_stale_file(registry: Registry, tmp_path: Path) -> None:
    import grp
    import os
    import stat
    import subprocess
    import uuid

    from tests.fixtures.services import require_root

    require_root()
    group = f"kk{uuid.uuid4().hex[:8]}"
    path = tmp_path / "run" / "api.sock"
    path.parent.mkdir()
    # a socket file left by a dead server is replaced
    import socket as socketlib

    stale = socketlib.socket(socketlib.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    try:
        runner = await serve_api(
            ApiSettings(socket_path=path, socket_group=group, socket_mode=0o660), registry
        )
        try:
            info = os.stat(path)
            assert stat.S_IMODE(info.st_mode) == 0o660
            assert info.st_gid == grp.getgrnam(group).gr_gid
            with pytest.raises(ApiServerError, match="already listening"):
                await serve_api(ApiSettings(socket_path=path, socket_group=None), registry)
        finally:
            await runner.stop()
        assert not path.exists()
    finally:
        await asyncio.to_thread(
            subprocess.run, ["groupdel", group], check=False, capture_output=True
        )


async def test_client_over_https_with_token(api: Api) -> None:
    from kukeon.api import Kind, parse_resource
    from kukeon.client.apiclient import ApiClient, ApiRequestError

    realm = parse_resource(realm_doc("via-tls"))
    async with ApiClient(server=api.https, token=ADMIN_TOKEN, ca_file=api.ca) as client:
        await client.create(realm)
        assert [r.metadata.name for r in (await client.list(Kind.REALM)).items] == ["via-tls"]
    async with ApiClient(server=api.https, token=VIEWER_TOKEN, ca_file=api.ca) as viewer:
        with pytest.raises(ApiRequestError) as refused:
            await viewer.delete(Kind.REALM, ("via-tls",))
        assert refused.value.code == 403
        assert refused.value.reason == "Forbidden"
