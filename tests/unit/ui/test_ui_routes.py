"""The console's routes on the API app: the page without a token on TCP and with its strict
headers, everything else behind the token; a pasted manifest read into paths."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from kukeon.ui.headers import CONTENT_SECURITY_POLICY
from kukeon.ui.manifests import read_manifest
from tests.unit.ui.conftest import ADMIN, VIEWER


async def test_page_loads_without_token_with_strict_headers(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/ui/")
    assert response.status == 200
    body = await response.text()
    assert '<script type="module" src="static/js/main.js">' in body
    assert "<script>" not in body  # no inline script: the CSP would refuse it anyway
    headers = response.headers
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    redirect = await client.get("/ui", allow_redirects=False)
    assert (redirect.status, redirect.headers["Location"]) == (302, "/ui/")


async def test_static_files_are_served_from_the_table_only(
    client: TestClient[web.Request, web.Application],
) -> None:
    script = await client.get("/ui/static/js/main.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    again = await client.get(
        "/ui/static/js/main.js", headers={"If-None-Match": script.headers["ETag"]}
    )
    assert again.status == 304
    for path in ("/ui/static/../routes.py", "/ui/static/%2e%2e/routes.py", "/ui/static/nope.js"):
        missing = await client.get(path)
        assert missing.status in (401, 404), path  # never served (401: no such route)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (ADMIN, {"user": "alice", "role": "admin", "realms": [], "writes": True}),
        (VIEWER, {"user": "vera", "role": "viewer", "realms": [], "writes": False}),
    ],
)
async def test_whoami_needs_and_tells_the_token(
    client: TestClient[web.Request, web.Application], token: str, expected: dict[str, object]
) -> None:
    assert (await client.get("/ui/whoami")).status == 401
    assert (await client.post("/ui/manifest", data="kind: Realm")).status == 401
    answer = await client.get("/ui/whoami", headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 200
    assert await answer.json() == expected


async def test_manifest_read_into_paths_and_causes(
    client: TestClient[web.Request, web.Application],
) -> None:
    text = """
kind: Cell
metadata: {name: web}
spec: {realmId: r, spaceId: s, stackId: st, containers: [{id: a, image: b}]}
---
kind: Secret
metadata: {name: api, realm: r}
---
kind: Cell
metadata: {name: orphan}
spec: {realmId: r}
---
kind: Pod
"""
    answer = await client.post(
        "/ui/manifest", data=text, headers={"Authorization": f"Bearer {VIEWER}"}
    )
    assert answer.status == 200
    web_cell, secret, orphan, pod = (await answer.json())["documents"]
    root = "/apis/kukeon.io/v1beta1/realms/r"
    assert web_cell["collection"] == f"{root}/spaces/s/stacks/st/cells"
    assert web_cell["object"] == f"{root}/spaces/s/stacks/st/cells/web"
    assert secret["object"] == f"{root}/spaces/-/stacks/-/secrets/api"
    assert [c["field"] for c in orphan["causes"]] == ["spec.spaceId", "spec.stackId"]
    assert "collection" not in orphan
    assert pod["causes"][0]["field"] == "kind"


def test_manifest_reading_is_kukectls() -> None:
    [duplicate] = read_manifest("kind: Realm\nmetadata: {name: a}\nmetadata: {name: b}\n")
    assert "duplicate key" in duplicate["causes"][0]["message"]
    [listed] = read_manifest(
        '{"kind": "List", "items": [{"kind": "Realm", "metadata": {"name": "x"}}]}'
    )
    assert listed["object"] == "/apis/kukeon.io/v1beta1/realms/x"


def _alias_bomb(levels: int) -> str:
    """A few hundred bytes of YAML that expand into 10**levels strings."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        # A viewer's paste used to take kukeond's memory until it was killed.
        (_alias_bomb(7).encode(), "YAML aliases are not accepted"),
        (b"kind: Realm\n---\n" + _alias_bomb(7).encode(), "YAML aliases"),
        # These were a RecursionError or a UnicodeDecodeError: 500s.
        (b"[" * 20_000 + b"]" * 20_000, "nested 20000 levels deep"),
        (b"a: " + b"[" * 5_000 + b"]" * 5_000, "nested more than 100 levels deep"),
        (b"\xff\xfekind: Realm", "not UTF-8"),
    ],
    ids=["alias bomb", "alias bomb in a second document", "deep JSON", "deep YAML", "latin-1"],
)
async def test_a_manifest_no_reader_could_expand_safely_is_400(
    client: TestClient[web.Request, web.Application], body: bytes, words: str
) -> None:
    async with asyncio.timeout(10):
        answer = await client.post(
            "/ui/manifest", data=body, headers={"Authorization": f"Bearer {VIEWER}"}
        )
    assert answer.status == 400
    status = await answer.json()
    assert status["kind"] == "Status"
    assert words in status["message"]


async def test_a_manifest_with_a_repeated_key_is_still_read_per_document(
    client: TestClient[web.Request, web.Application],
) -> None:
    text = "kind: Realm\nmetadata: {name: a}\nmetadata: {name: b}\n---\nkind: Realm\n"
    answer = await client.post(
        "/ui/manifest", data=text, headers={"Authorization": f"Bearer {VIEWER}"}
    )
    assert answer.status == 200
    duplicate, _ = (await answer.json())["documents"]
    assert "duplicate key" in duplicate["causes"][0]["message"]


async def test_a_token_that_is_no_utf_8_is_401_not_500(
    client: TestClient[web.Request, web.Application],
) -> None:
    """aiohttp reads header bytes that are not UTF-8 as lone surrogates; hashing the token
    encoded it strictly: a 500 and a logged traceback for any unauthenticated client."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            b"GET /ui/whoami HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer \xff\xfe\r\n\r\n"
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    assert head.split(b" ", 2)[1] == b"401", head


async def test_a_manifest_with_a_character_yaml_refuses_is_read_into_a_cause(
    client: TestClient[web.Request, web.Application],
) -> None:
    # A NUL (or \x07, U+FFFE) was a 500: PyYAML's reader refused it as the loader was made.
    text = "kind: Cell\nmetadata:\n  name: a\x00b\n"
    answer = await client.post(
        "/ui/manifest", data=text, headers={"Authorization": f"Bearer {VIEWER}"}
    )
    assert answer.status == 200, await answer.text()
    [unreadable] = (await answer.json())["documents"]
    assert "unacceptable character #x0000" in unreadable["causes"][0]["message"]
