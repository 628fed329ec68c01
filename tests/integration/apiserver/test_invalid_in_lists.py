"""A list skips a stored document that is not valid; its answer says so in a ``Warning``
header (as kube-apiserver's), which kukectl's client prints, so an operator does not take
the object for gone. Realm-scoped names are only told to who may see the realm."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.client.apiclient import ApiClient, warning_text
from tests.integration.apiserver.conftest import (
    EDITOR_TOKEN,
    VIEWER_TOKEN,
    Api,
    realm_doc,
    space_doc,
    tls_session,
)
from tests.integration.store.test_invalid_documents import put_raw

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


async def _list(http: aiohttp.ClientSession, path: str) -> tuple[dict[str, Any], str | None]:
    async with http.get(path) as response:
        assert response.status == 200
        return await response.json(), response.headers.get("Warning")


async def test_a_list_warns_of_the_documents_it_skips(
    http: aiohttp.ClientSession, api: Api
) -> None:
    assert (await http.post(f"{V}/realms", json=realm_doc("r"))).status == 201
    assert (await http.post(f"{V}/realms/r/spaces", json=space_doc("good"))).status == 201
    spaces, warning = await _list(http, f"{V}/realms/r/spaces")
    assert warning is None

    prefix = api.registry.layout.scope_prefix
    await put_raw(api.registry, prefix(Kind.SPACE, ("r",)) + "broken", b'{"kind": "Space", ')
    await put_raw(api.registry, prefix(Kind.SPACE, ("r",)) + 'evil"\r\nX-Injected: 1', b"[]")
    for _ in range(2):  # from etcd, then from the watch cache
        spaces, warning = await _list(http, f"{V}/realms/r/spaces")
        assert [s["metadata"]["name"] for s in spaces["items"]] == ["good"]
        assert warning is not None
        text = warning_text(warning)
        assert text.startswith("2 stored Space documents are invalid and not listed: r/broken, ")
        assert "a get of one says why" in text
        assert "\r" not in warning
        assert "\n" not in warning
    async with http.get(f"{V}/realms/r/spaces/broken") as response:
        assert response.status >= 400
        assert "not JSON" in (await response.json())["message"]

    said: list[str] = []
    client = ApiClient(server=f"unix://{api.socket}")
    client.on_warning = said.append
    async with client:
        listed = await client.list(Kind.SPACE, ("r",))
    assert [s.metadata.name for s in listed.items] == ["good"]
    assert len(said) == 1
    assert said[0].startswith("2 stored Space documents are invalid")


async def test_an_invalid_realm_is_told_only_to_who_may_see_it(
    http: aiohttp.ClientSession, api: Api
) -> None:
    """A Realm's key is its own name: an editor of other realms listing realms is not told
    the name of an invalid one (it was, as though a realm's name were no realm's)."""
    assert (await http.post(f"{V}/realms", json=realm_doc("team"))).status == 201
    await put_raw(api.registry, api.registry.layout.scope_prefix(Kind.REALM, ()) + "hidden", b"[")
    _, warning = await _list(http, f"{V}/realms")
    assert warning is not None
    assert "hidden" in warning_text(warning)
    async with tls_session(api, VIEWER_TOKEN) as viewer:
        _, warning = await _list(viewer, f"{V}/realms")
    assert warning is not None
    assert "hidden" in warning_text(warning)
    async with tls_session(api, EDITOR_TOKEN) as editor:
        realms, warning = await _list(editor, f"{V}/realms")
    assert [r["metadata"]["name"] for r in realms["items"]] == ["team"]
    assert warning is None
