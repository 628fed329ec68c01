"""The API server answers 429 past its bounds, on the real server: a token holder's watches
past apiMaxLongRunningPerUser (the local admin's are not bound per user), everyone's past
apiMaxLongRunning (token holders a tenth short of it), and short requests past
apiMaxRequestsInflight while others are still being received; kukectl's client waits and asks
again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from kukeon.client.apiclient import ApiClient
from kukeon.store import Registry
from tests.integration.apiserver.conftest import (
    EDITOR_TOKEN,
    VIEWER_TOKEN,
    Certs,
    realm_doc,
    running_api,
    tls_session,
)

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


@contextlib.asynccontextmanager
async def watching_team(
    registry: Registry, certs: Certs, tokens_file: Path, **settings: Any
) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession, aiohttp.ClientSession]]:
    """The API with ``settings``, realm team made: the local admin's session on the unix
    socket, the editor's and the viewer's over TLS."""
    async with running_api(registry, certs, tokens_file, **settings) as api:
        connector = aiohttp.UnixConnector(path=str(api.socket))
        async with (
            aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as admin,
            tls_session(api, EDITOR_TOKEN) as editor,
            tls_session(api, VIEWER_TOKEN) as viewer,
        ):
            assert (await admin.post(f"{V}/realms", json=realm_doc("team"))).status == 201
            yield admin, editor, viewer


async def too_many(response: aiohttp.ClientResponse) -> str:
    """The message of ``response``, a 429 Status telling the client to retry in a second."""
    body: dict[str, Any] = await response.json()
    assert response.status == 429, body
    assert body["kind"] == "Status"
    assert body["reason"] == "TooManyRequests"
    assert response.headers["Retry-After"] == "1"
    message: str = body["message"]
    return message


async def test_watches_past_the_per_user_bound_are_429(
    registry: Registry, certs: Certs, tokens_file: Path
) -> None:
    team = watching_team(registry, certs, tokens_file, max_long_running_per_user=2)
    async with team as (admin, editor, _):
        watch = f"{V}/realms/team/spaces?watch=true"
        first = await editor.get(watch)
        second = await editor.get(watch)
        assert (first.status, second.status) == (200, 200)
        await too_many(await editor.get(watch))
        # Short requests are not held back by open watches.
        assert (await editor.get(f"{V}/realms/team/spaces")).status == 200
        # The local admin is root on the host: not bound per user.
        mine = [await admin.get(watch) for _ in range(3)]
        assert [r.status for r in mine] == [200, 200, 200]
        for response in mine:
            response.close()
        first.close()
        async with asyncio.timeout(10):
            while (again := await editor.get(watch)).status == 429:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert again.status == 200
        again.close()
        second.close()


async def test_long_running_requests_past_the_whole_bound_are_429(
    registry: Registry, certs: Certs, tokens_file: Path
) -> None:
    # Before, only per token holder: the local admin's, and holders together, had no bound.
    team = watching_team(registry, certs, tokens_file, max_long_running=4)
    async with team as (admin, editor, viewer):
        watch = f"{V}/realms/team/spaces?watch=true"
        # An editor's realm holds one of these 3 (a quarter, at least one); a viewer is
        # bound per user only.
        opened = [await editor.get(watch), await viewer.get(watch)]
        opened.append(await admin.get(watch))
        assert [r.status for r in opened] == [200, 200, 200]
        refused = await editor.get(watch)  # token holders stop at 3 of the 4
        assert "(apiMaxLongRunning 4, of which token holders take 3)" in await too_many(refused)
        opened.append(await admin.get(watch))  # the place kept for the local admin
        assert opened[-1].status == 200
        assert "(apiMaxLongRunning 4)" in await too_many(await admin.get(watch))
        # Short requests are not held back by open watches.
        assert (await editor.get(f"{V}/realms/team/spaces")).status == 200
        opened.pop(0).close()
        async with asyncio.timeout(10):
            while (again := await admin.get(watch)).status == 429:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        opened.append(again)
        for response in opened:
            response.close()


async def _slow_body() -> AsyncIterator[bytes]:
    yield b'{"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", '
    await asyncio.sleep(2.5)
    yield b'"metadata": {"name": "slow"}}'


async def test_short_requests_past_the_bound_are_429_and_kukectl_retries(
    registry: Registry, certs: Certs, tokens_file: Path
) -> None:
    async with running_api(registry, certs, tokens_file, max_requests_inflight=1) as api:
        connector = aiohttp.UnixConnector(path=str(api.socket))
        async with (
            aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as admin,
            tls_session(api, EDITOR_TOKEN) as editor,
        ):
            slow = asyncio.create_task(
                editor.post(
                    f"{V}/realms",
                    data=_slow_body(),
                    headers={"Content-Type": "application/json"},
                )
            )
            await asyncio.sleep(0.5)  # its body is still coming: the one request in flight
            busy = await editor.get(f"{V}/realms")
            assert busy.status == 429, await busy.text()
            # The local admin is not held back by token holders filling the bound (they
            # could otherwise lock out the one who can mend things, with slow bodies).
            assert (await admin.get(f"{V}/realms")).status == 200
            # kukectl's client is told to retry in a second and does, until it gets in.
            async with ApiClient(server=api.https, token=EDITOR_TOKEN, ca_file=api.ca) as client:
                listed = await client.request("GET", f"{V}/realms")
            assert (await slow).status == 403  # an editor creates no realm
            assert isinstance(listed["items"], list)


def _realm_editors(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Tokens of eve and mallory, editors of realm team, and olga, of realm o; their file."""
    tokens = {name: f"{name}-{uuid.uuid4().hex}" for name in ("eve", "mallory", "olga")}
    realms = {"eve": "team", "mallory": "team", "olga": "o"}
    tokens_file = tmp_path / "tokens.yaml"
    entries = [
        {"token": tokens[user], "user": user, "role": "editor", "realms": [realm]}
        for user, realm in realms.items()
    ]
    tokens_file.write_text(yaml.safe_dump({"tokens": entries}))
    return tokens, tokens_file


async def test_one_realms_editors_share_a_quarter_of_the_short_bound(
    registry: Registry, certs: Certs, tmp_path: Path
) -> None:
    """Two tokens of realm team (two users) hold at most a quarter of apiMaxRequestsInflight
    together (4: one); an editor of another realm is not held back by them."""
    tokens, tokens_file = _realm_editors(tmp_path)
    async with (
        running_api(registry, certs, tokens_file, max_requests_inflight=4) as api,
        tls_session(api, tokens["eve"]) as eve,
        tls_session(api, tokens["mallory"]) as mallory,
        tls_session(api, tokens["olga"]) as olga,
    ):
        slow = asyncio.create_task(
            eve.post(f"{V}/realms", data=_slow_body(), headers={"Content-Type": "application/json"})
        )
        await asyncio.sleep(0.5)  # its body is still coming: team's one place is taken
        busy = await mallory.get(f"{V}/realms/team/spaces")
        assert "the editors of realm team" in await too_many(busy)
        assert (await olga.get(f"{V}/realms/o/spaces")).status != 429
        assert (await slow).status == 403  # an editor creates no realm
        assert (await mallory.get(f"{V}/realms/team/spaces")).status != 429


async def test_one_realms_editors_share_a_quarter_of_the_long_running_bound(
    registry: Registry, certs: Certs, tmp_path: Path
) -> None:
    """Two tokens of realm team hold at most a quarter of what token holders may of
    apiMaxLongRunning together (9: 8, of which team 2); an editor of another realm still
    watches. Before, only each user was bound: a realm's editors took every place."""
    tokens, tokens_file = _realm_editors(tmp_path)
    async with (
        running_api(registry, certs, tokens_file, max_long_running=9) as api,
        tls_session(api, tokens["eve"]) as eve,
        tls_session(api, tokens["mallory"]) as mallory,
        tls_session(api, tokens["olga"]) as olga,
    ):
        connector = aiohttp.UnixConnector(path=str(api.socket))
        async with aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as admin:
            for realm in ("team", "o"):
                assert (await admin.post(f"{V}/realms", json=realm_doc(realm))).status == 201
        opened = [
            await eve.get(f"{V}/realms/team/spaces?watch=true"),
            await mallory.get(f"{V}/realms/team/spaces?watch=true"),
        ]
        try:
            assert [r.status for r in opened] == [200, 200]
            refused = await mallory.get(f"{V}/realms/team/spaces?watch=true")
            opened.append(refused)  # closed below if it was let through (a stream)
            assert refused.status == 429, "a third watch of realm team's editors was let in"
            assert "the editors of realm team already have 2" in await too_many(refused)
            opened.append(await olga.get(f"{V}/realms/o/spaces?watch=true"))
            assert opened[-1].status == 200
        finally:
            for response in opened:
                response.close()
