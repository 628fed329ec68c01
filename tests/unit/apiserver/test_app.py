"""The HTTP layer over a fake registry: what reaches the registry, and how failures look.

aiohttp's TestServer listens on loopback TCP, so these requests take the token path of the
authentication middleware (the unix socket path is covered by the integration tests).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.apiserver import ApiSettings, TokenBook, create_app
from kukeon.store import NotFound, ResourceList, WatchEvent

ADMIN = "admin-token-0123456789"
VIEWER = "viewer-token-0123456789"
EDITOR = "editor-token-0123456789"
V = "/apis/kukeon.io/v1beta1"


def _realm(name: str) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Realm",
            "metadata": {"name": name, "resourceVersion": "7"},
        }
    )


class FakeRegistry:
    """Records calls; behaviour switched per test."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_with: BaseException | None = None
        self.delay = 0.0

    async def _step(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with

    async def create(self, res: AnyResource) -> AnyResource:
        await self._step("create", res)
        return res

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        await self._step("get", kind, key)
        return _realm(key[-1])

    async def list(
        self, kind: Kind, scope: tuple[str, ...] = (), *, label_selector: str | None = None
    ) -> ResourceList:
        await self._step("list", kind, scope, label_selector)
        return ResourceList([_realm("a")], 42)

    async def update(self, res: AnyResource, *, charged: bool = False) -> AnyResource:
        await self._step("update", res)
        return res

    async def update_status(self, res: AnyResource) -> AnyResource:
        await self._step("update_status", res)
        return res

    async def delete(
        self,
        kind: Kind,
        key: tuple[str, ...],
        *,
        cascade: bool = False,
        background: bool = False,
        grace_seconds: int | None = None,
        precondition: Callable[[AnyResource], None] | None = None,
        hold: str | None = None,
    ) -> AnyResource | None:
        await self._step("delete", kind, key, cascade)
        return None

    async def add_finalizer(
        self, kind: Kind, key: tuple[str, ...], name: str
    ) -> AnyResource | None:
        await self._step("add_finalizer", kind, key, name)
        return None

    async def watch(
        self, kind: Kind, scope: tuple[str, ...] = (), *, resource_version: int
    ) -> AsyncIterator[WatchEvent]:
        await self._step("watch", kind, scope, resource_version)
        yield WatchEvent("ADDED", _realm("w"), resource_version + 1)

    async def current_revision(self) -> int:
        await self._step("current_revision")
        return 50


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
async def client(fake: FakeRegistry) -> AsyncIterator[TestClient[Any, Any]]:
    book = TokenBook.from_document(
        {
            "tokens": [
                {"token": ADMIN, "user": "alice", "role": "admin"},
                {"token": VIEWER, "user": "victor", "role": "viewer"},
                {"token": EDITOR, "user": "eddie", "role": "editor", "realms": ["team"]},
            ]
        }
    )
    settings = ApiSettings(socket_path=None, request_timeout=0.5, max_body_bytes=2048)
    app = create_app(
        registry=fake,
        settings=settings,
        tokens=book,
        readiness_checks={"controllers": lambda: False},
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_label_selector_and_scope_pass_through(
    client: TestClient[Any, Any], fake: FakeRegistry
) -> None:
    response = await client.get(
        f"{V}/realms/r/spaces/s/stacks", params={"labelSelector": "a=b,c"}, headers=_auth()
    )
    assert response.status == 200
    assert fake.calls == [("list", (Kind.STACK, ("r", "s"), "a=b,c"))]
    body = await response.json()
    assert body["metadata"]["resourceVersion"] == "42"


async def test_bad_selector_never_reaches_the_registry(
    client: TestClient[Any, Any], fake: FakeRegistry
) -> None:
    response = await client.get(f"{V}/cells", params={"labelSelector": "a=b,,"}, headers=_auth())
    assert response.status == 400
    assert fake.calls == []


async def test_unexpected_failure_is_a_500_status_without_traceback(
    client: TestClient[Any, Any], fake: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_with = RuntimeError("secret internal detail")
    with caplog.at_level(logging.ERROR):
        response = await client.get(f"{V}/realms/r", headers=_auth())
    body = await response.json()
    assert response.status == 500
    assert body["kind"] == "Status"
    assert body["reason"] == "InternalError"
    assert "secret" not in await response.text()
    assert "Traceback" not in await response.text()
    assert "secret internal detail" in caplog.text  # logged for the operator


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (errno.ENOSPC, "HostDiskFull"),
        (errno.EDQUOT, "HostDiskFull"),
        (errno.EROFS, "HostDiskReadOnly"),
    ],
)
async def test_a_write_the_disk_refused_is_a_507_naming_the_file(
    client: TestClient[Any, Any],
    fake: FakeRegistry,
    caplog: pytest.LogCaptureFixture,
    number: int,
    reason: str,
) -> None:
    # What a full disk refuses is no server bug: not a 500 and a traceback (an image import
    # into a full state directory was), but the node's condition, said as such.
    try:
        raise OSError(number, os.strerror(number), "/var/lib/kukeon/images/incoming/x.tar")
    except OSError as refused:
        try:
            raise RuntimeError("while staging") from refused
        except RuntimeError as outer:
            fake.fail_with = outer
    with caplog.at_level(logging.WARNING):
        response = await client.get(f"{V}/realms/r", headers=_auth())
    body = await response.json()
    assert response.status == 507
    assert body["reason"] == reason
    assert f"{os.strerror(number)} writing /var/lib/kukeon/images/incoming/x.tar" in body["message"]
    assert "Traceback" not in caplog.text


async def test_slow_request_is_a_504(client: TestClient[Any, Any], fake: FakeRegistry) -> None:
    fake.delay = 2.0
    response = await client.get(f"{V}/realms/r", headers=_auth())
    assert response.status == 504
    assert (await response.json())["reason"] == "Timeout"


async def test_store_errors_are_mapped(client: TestClient[Any, Any], fake: FakeRegistry) -> None:
    fake.fail_with = NotFound("Realm 'r' not found")
    response = await client.get(f"{V}/realms/r", headers=_auth())
    assert response.status == 404
    body = await response.json()
    assert body["details"] == {"name": "r", "kind": "Realm"}


async def test_tokens_on_tcp(client: TestClient[Any, Any], fake: FakeRegistry) -> None:
    assert (await client.get(f"{V}/realms")).status == 401
    assert (await client.get(f"{V}/realms", headers=_auth("nope" * 5))).status == 401
    forbidden = await client.post(
        f"{V}/realms", json={"metadata": {"name": "x"}}, headers=_auth(VIEWER)
    )
    assert forbidden.status == 403
    assert fake.calls == []  # refused before anything was read or written
    assert (await client.get("/healthz")).status == 200


async def test_body_limit_is_a_413_status(client: TestClient[Any, Any], fake: FakeRegistry) -> None:
    response = await client.post(
        f"{V}/realms",
        data=b'{"metadata": {"name": "' + b"x" * 4096 + b'"}}',
        headers={**_auth(), "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert (await response.json())["kind"] == "Status"
    assert fake.calls == []


async def test_delete_options(client: TestClient[Any, Any], fake: FakeRegistry) -> None:
    plain = await client.delete(f"{V}/realms/r", headers=_auth())
    assert plain.status == 200
    assert (await plain.json())["status"] == "Success"
    await client.delete(
        f"{V}/realms/r", params={"propagationPolicy": "Foreground"}, headers=_auth()
    )
    await client.delete(f"{V}/realms/r", json={"propagationPolicy": "Background"}, headers=_auth())
    cascades = [args[2] for name, args in fake.calls if name == "delete"]
    assert cascades == [False, True, True]


async def test_readyz_reports_each_check(client: TestClient[Any, Any]) -> None:
    response = await client.get("/readyz")
    assert response.status == 503
    text = await response.text()
    assert "[+]etcd ok" in text
    assert "[-]controllers failed: not running" in text


async def test_readyz_names_an_etcd_that_does_not_answer(
    client: TestClient[Any, Any], fake: FakeRegistry
) -> None:
    fake.delay = 2.0  # longer than the request timeout (0.5 s)
    response = await client.get("/readyz")
    assert response.status == 503
    assert "[-]etcd failed: no answer within 0.4s" in await response.text()


async def test_watch_with_resource_version(
    client: TestClient[Any, Any], fake: FakeRegistry
) -> None:
    response = await client.get(
        f"{V}/realms", params={"watch": "true", "resourceVersion": "9"}, headers=_auth(VIEWER)
    )
    assert response.status == 200
    lines = (await response.read()).decode().splitlines()
    assert '"type":"ADDED"' in lines[0]
    assert '"name":"w"' in lines[0]
    assert ("watch", (Kind.REALM, (), 9)) in fake.calls


async def test_metrics_disabled_is_404(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/metrics", headers=_auth())).status == 404


async def test_editor_may_create_only_its_own_realms(
    client: TestClient[Any, Any], fake: FakeRegistry
) -> None:
    def realm(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": name}}

    own = await client.post(f"{V}/realms", json=realm("team"), headers=_auth(EDITOR))
    assert own.status == 201
    other = await client.post(f"{V}/realms", json=realm("other"), headers=_auth(EDITOR))
    assert other.status == 403
    assert [name for name, _ in fake.calls] == ["create"]


async def test_long_running_routes_escape_the_request_timeout(fake: FakeRegistry) -> None:
    from aiohttp import web

    from kukeon.apiserver import long_running

    settings = ApiSettings(socket_path=None, request_timeout=0.2)
    book = TokenBook.from_document({"tokens": [{"token": ADMIN, "user": "a", "role": "admin"}]})
    app = create_app(registry=fake, settings=settings, tokens=book)

    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return web.Response(text="done")

    async def upload(request: web.Request) -> web.StreamResponse:
        return await slow(request)

    app.router.add_post("/upload", long_running(upload))
    app.router.add_get("/stream", slow)
    async with TestClient(TestServer(app)) as test_client:
        assert (await test_client.post("/upload", headers=_auth())).status == 200
        assert (await test_client.get("/stream", headers=_auth())).status == 504
        followed = await test_client.get("/stream", params={"follow": "true"}, headers=_auth())
        assert followed.status == 200


@pytest.mark.parametrize(
    ("accept", "code"),
    [
        (None, 200),
        ("application/json", 200),
        ("*/*", 200),
        ("application/json;stream=watch", 200),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200),  # a browser
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", 200),  # kubectl get
        ("application/yaml", 406),
        ("application/vnd.kubernetes.protobuf", 406),
        ("application/json;as=Table;v=v1;g=meta.k8s.io", 406),
        ("application/json;q=0", 406),
        ("garbage/;;;", 406),
    ],
)
async def test_an_accept_header_the_api_cannot_answer_is_a_406(
    client: TestClient[Any, Any], fake: FakeRegistry, accept: str | None, code: int
) -> None:
    """A client asking only for YAML, protobuf or a Table was answered JSON it then failed
    to decode: kube-apiserver's 406 instead, before anything is read."""
    headers = _auth() if accept is None else {**_auth(), "Accept": accept}
    for path in (f"{V}/realms", f"{V}/realms/r"):
        response = await client.get(path, headers=headers)
        assert response.status == code, await response.text()
        body = await response.json()
        if code == 406:
            assert body["reason"] == "NotAcceptable"
    if code == 406:
        assert fake.calls == []
