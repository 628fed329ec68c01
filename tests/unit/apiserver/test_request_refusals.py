"""Requests kube-apiserver refuses, refused the same way here (over a fake registry).

A resourceVersion newer than etcd's (504 ``ResourceVersionTooLarge`` after a wait, not
current data passed off as that version), a 404 that shows the path as sent (an escaped
``%2F`` is not shown decoded, looking like a valid path), and a body whose Content-Type is
neither JSON nor YAML (415, not read as JSON all the same).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kukeon.apiserver import ApiSettings, TokenBook, create_app
from kukeon.apiserver.events import EventRoutes
from kukeon.apiserver.revisionwait import too_large, wait_for_revision
from kukeon.store.events import EventList, EventStore
from tests.unit.apiserver.test_app import ADMIN, FakeRegistry, V

REALM = b'{"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "x"}}'


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()  # etcd's revision: 50


@pytest.fixture
async def client(fake: FakeRegistry) -> AsyncIterator[TestClient[Any, Any]]:
    book = TokenBook.from_document({"tokens": [{"token": ADMIN, "user": "a", "role": "admin"}]})
    # A short request waits for its revision 1.2 s (80 % of its timeout), not 3 s. The
    # 0.3 s left before the deadline's own 504 is the test's margin for a loaded machine
    # (0.1 s of 0.5 was not: a unit run beside eight helpers got the generic 504).
    settings = ApiSettings(socket_path=None, request_timeout=1.5, max_body_bytes=2048)
    app = create_app(registry=fake, settings=settings, tokens=book)
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


class _FakeEvents:
    """An EventStore at etcd's revision 50, holding no Event."""

    async def current_revision(self) -> int:
        return 50

    async def list(self, realm: str | None = None) -> EventList:
        return EventList([], 50)


@pytest.fixture
async def events_client() -> AsyncIterator[TestClient[Any, Any]]:
    """The Event routes on a server whose requests time out after 1.5 s (see ``client``)."""
    book = TokenBook.from_document({"tokens": [{"token": ADMIN, "user": "a", "role": "admin"}]})
    settings = ApiSettings(socket_path=None, request_timeout=1.5)
    app = create_app(registry=FakeRegistry(), settings=settings, tokens=book)
    store = cast(EventStore, _FakeEvents())
    EventRoutes(store=store, request_timeout=settings.request_timeout).add_routes(app)
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        yield c


def _too_large_status(body: dict[str, Any], wanted: int) -> None:
    assert body["code"] == 504
    assert body["reason"] == "Timeout"
    assert f"Too large resource version: {wanted}, current: 50" in body["message"]
    assert body["details"]["retryAfterSeconds"] == 1
    (cause,) = body["details"]["causes"]
    assert cause["reason"] == "ResourceVersionTooLarge"
    assert cause["field"] == "resourceVersion"


@pytest.mark.parametrize("path", [f"{V}/realms", f"{V}/realms/r"])
async def test_a_read_from_a_future_resource_version_is_a_504_after_a_wait(
    client: TestClient[Any, Any], fake: FakeRegistry, path: str
) -> None:
    started = time.monotonic()
    response = await client.get(path, params={"resourceVersion": "51"})
    assert response.status == 504
    assert response.headers["Retry-After"] == "1"
    _too_large_status(await response.json(), 51)
    assert time.monotonic() - started >= 1.15  # it waited for etcd to get there
    assert not [name for name, _ in fake.calls if name in ("list", "get")]


async def test_a_read_from_a_reached_resource_version_is_answered(
    client: TestClient[Any, Any],
) -> None:
    for rv in ("50", "1", "0", ""):
        response = await client.get(f"{V}/realms", params={"resourceVersion": rv})
        assert response.status == 200, await response.text()
    matched = await client.get(
        f"{V}/realms", params={"resourceVersion": "50", "resourceVersionMatch": "NotOlderThan"}
    )
    assert matched.status == 200


async def test_a_watch_from_a_future_resource_version_is_a_504(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get(f"{V}/realms", params={"watch": "true", "resourceVersion": "60"})
    assert response.status == 504
    _too_large_status(await response.json(), 60)


@pytest.mark.parametrize(
    ("params", "wait"),
    [
        ({"resourceVersion": "51"}, 1.2),  # a list: within the request's deadline
        ({"resourceVersion": "51", "watch": "1"}, 1.2),  # a watch: no longer than a list
        ({"resourceVersion": "51", "watch": "1", "timeoutSeconds": "0.2"}, 0.2),  # nor asked
    ],
)
async def test_events_from_a_future_resource_version_wait_within_the_request_timeout(
    events_client: TestClient[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, str],
    wait: float,
) -> None:
    # The Event routes waited 3 s whatever the server's requestTimeout (1.5 s here): a list
    # was cut by the deadline's generic 504 (no ResourceVersionTooLarge cause, so a
    # reflector did not know to relist) and a watch held its client 3 s.
    waits: list[float] = []

    async def recorded(wanted: int, current: Any, **options: Any) -> None:
        waits.append(options["wait"])
        await wait_for_revision(wanted, current, **options)

    monkeypatch.setattr("kukeon.apiserver.events.wait_for_revision", recorded)
    started = time.monotonic()
    response = await events_client.get(f"{V}/events", params=params)
    assert response.status == 504
    _too_large_status(await response.json(), 51)
    assert waits == [pytest.approx(wait)]
    assert time.monotonic() - started < 2.5  # not the 3 s it was (a loaded machine's margin)


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"resourceVersion": "5", "resourceVersionMatch": "Exact"}, "'Exact' is not supported"),
        ({"resourceVersionMatch": "NotOlderThan"}, "unless resourceVersion is provided"),
        ({"resourceVersion": "5", "resourceVersionMatch": "Newest"}, "must be 'NotOlderThan'"),
        ({"watch": "1", "resourceVersion": "5", "resourceVersionMatch": "NotOlderThan"}, "watch"),
    ],
)
async def test_resource_version_match_is_checked(
    client: TestClient[Any, Any], fake: FakeRegistry, params: dict[str, str], said: str
) -> None:
    response = await client.get(f"{V}/realms", params=params)
    assert response.status == 400
    body = await response.json()
    assert said in body["message"]
    assert body["details"]["causes"][0]["field"] == "resourceVersionMatch"
    assert fake.calls == []


async def test_wait_for_revision_returns_once_etcd_gets_there() -> None:
    revisions = iter([7, 8, 9, 10])

    async def current() -> int:
        return next(revisions)

    await wait_for_revision(10, current, wait=2.0)
    await wait_for_revision(3, current, known=5)  # the cache has seen it: etcd not asked
    assert too_large(9, 4).to_status()["details"]["causes"] == [
        {
            "field": "resourceVersion",
            "message": "Too large resource version",
            "reason": "ResourceVersionTooLarge",
        }
    ]


async def test_an_unknown_path_is_shown_as_sent(client: TestClient[Any, Any]) -> None:
    response = await client.get("/apis/kukeon.io%2Fv1beta1/realms")
    assert response.status == 404
    message = (await response.json())["message"]
    assert message == "no such API path: /apis/kukeon.io%2Fv1beta1/realms"
    long = await client.get("/apis/" + "x%2F" * 200, params={"q": "1"})
    message = (await long.json())["message"]
    assert "x%2Fx%2F" in message
    assert "(806 characters)" in message
    assert "q=1" not in message


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream"]
)
async def test_a_body_that_is_not_json_or_yaml_is_a_415(
    client: TestClient[Any, Any], fake: FakeRegistry, content_type: str
) -> None:
    response = await client.post(f"{V}/realms", data=REALM, headers={"Content-Type": content_type})
    assert response.status == 415
    body = await response.json()
    assert body["reason"] == "UnsupportedMediaType"
    assert content_type in body["message"]
    assert body["details"]["causes"][0]["field"] == "Content-Type"
    assert fake.calls == []


async def test_a_body_without_a_content_type_is_a_415(
    client: TestClient[Any, Any], fake: FakeRegistry
) -> None:
    response = await client.post(f"{V}/realms", data=REALM, skip_auto_headers=["Content-Type"])
    assert response.status == 415
    assert "no Content-Type" in (await response.json())["message"]
    assert fake.calls == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/yaml"]
)
async def test_json_and_yaml_bodies_are_read(
    client: TestClient[Any, Any], fake: FakeRegistry, content_type: str
) -> None:
    response = await client.post(f"{V}/realms", data=REALM, headers={"Content-Type": content_type})
    assert response.status == 201, await response.text()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_its_content_encoding_cannot_decode_is_a_400(
    client: TestClient[Any, Any],
    fake: FakeRegistry,
    caplog: pytest.LogCaptureFixture,
    encoding: str,
) -> None:
    # It was a 500 with a traceback: aiohttp's RequestPayloadError raised by request.read().
    response = await client.post(
        f"{V}/realms",
        data=b"not compressed at all",
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body["kind"] == "Status"
    assert "the request body cannot be read" in body["message"]
    assert fake.calls == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# (br: aiohttp's parser refuses it itself, 400, without Brotli installed.)
@pytest.mark.parametrize("encoding", ["zstd", "compress", "gzip, gzip", "x-gzip", "x"])
async def test_a_body_coded_other_than_gzip_or_deflate_is_a_415_and_closes(
    client: TestClient[Any, Any], fake: FakeRegistry, encoding: str
) -> None:
    # zstd was decoded by aiohttp (backports.zstd is installed for image layers) with a
    # window of up to 128 MiB the sender chose, before authentication: a memory lever.
    window_27 = bytes.fromhex("28b52ffd") + bytes([0x00, 0x88])  # a zstd frame header
    response = await client.post(
        f"{V}/realms",
        data=window_27 + b"\0" * 64,
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert response.status == 415, await response.text()
    body = await response.json()
    assert body["reason"] == "UnsupportedMediaType"
    assert "is not read" in body["message"]
    assert response.headers["Accept-Encoding"] == "gzip, deflate"
    assert response.headers.get("Connection", "").lower() == "close"
    assert fake.calls == []


async def test_a_gzip_body_is_read(client: TestClient[Any, Any], fake: FakeRegistry) -> None:
    import gzip

    response = await client.post(
        f"{V}/realms",
        data=gzip.compress(REALM),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status == 201, await response.text()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("DELETE", "/version", {"GET", "HEAD"}),
        ("PUT", f"{V}/realms", {"GET", "HEAD", "POST"}),
        ("POST", f"{V}/realms/r", {"GET", "HEAD", "PUT", "PATCH", "DELETE"}),
        ("DELETE", f"{V}/realms/r/status", {"GET", "HEAD", "PUT", "PATCH"}),
        (
            "OPTIONS",
            f"{V}/realms/r/spaces/s/stacks/t/cells/c",
            {"GET", "HEAD", "PUT", "PATCH", "DELETE"},
        ),
    ],
)
async def test_a_405_says_which_methods_the_path_allows(
    client: TestClient[Any, Any], method: str, path: str, allowed: set[str]
) -> None:
    # RFC 9110 15.5.6: a 405 MUST carry Allow; the Status dropped aiohttp's header.
    response = await client.request(method, path)
    assert response.status == 405
    assert (await response.json())["reason"] == "MethodNotAllowed"
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed
