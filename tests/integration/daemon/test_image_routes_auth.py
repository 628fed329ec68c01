"""Who may use the realm image routes: a real API server (TCP, TLS, tokens) with the real
image routes over a containerd that holds no images. Viewers list and inspect; editors of
the realm (and admins) pull, import, remove and prune; an editor of another realm nothing."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
import yaml

from kukeon.api import Kind, Realm, parse_resource
from kukeon.apiserver import ApiSettings, build_runner
from kukeon.controllers import Controllers
from kukeon.daemon.imageroutes import ImageRoutes
from kukeon.runtime.containerd.errors import ImageNotFoundError
from kukeon.store import Registry
from tests.fixtures.services import free_tcp_port
from tests.integration.apiserver.conftest import (  # noqa: F401 - the certs fixture
    Certs,
    certs,
)

pytestmark = pytest.mark.integration

TOKENS = {
    "admin": "admin-token-" + "a" * 16,
    "viewer": "viewer-token-" + "v" * 16,
    "editor": "editor-token-" + "e" * 16,
    "stranger": "stranger-token-" + "s" * 16,
}
IMAGES = "/apis/kukeon.io/v1beta1/realms/imgs/images"


class EmptyImages:
    """A containerd namespace without images."""

    async def list(self) -> list[Any]:
        return []

    async def get(self, name: str) -> Any:
        raise ImageNotFoundError(name, namespace="imgs.kukeon.io")

    async def delete(self, name: str, *, sync: bool = False) -> bool:
        return False


IMPORTS: list[tuple[str, bool]] = []
"""(namespace, shared with the node's other realms) of each import the routes asked for."""


class RecordingImports:
    """The image controller's import, noting whether the archive would be shared; its
    archive store's staging directory is the test's (the route stages uploads there)."""

    def __init__(self, state_dir: Path) -> None:
        self.archives = SimpleNamespace(incoming=state_dir / "images" / "incoming")

    async def import_archive(
        self, *, namespace: str, path: Path, share: bool = True, realm_limit: int | None = None
    ) -> list[str]:
        IMPORTS.append((namespace, share))
        return ["docker.io/library/nginx:1.27"]


async def _ensure(namespace: str, *, labels: Mapping[str, str] | None = None) -> None:
    return None


def empty_node(state_dir: Path) -> Controllers:
    images = EmptyImages()
    host = SimpleNamespace(
        namespace_of=lambda realm: f"{realm.metadata.name}.kukeon.io",
        containerd=SimpleNamespace(
            images=lambda namespace: images, namespaces=SimpleNamespace(ensure=_ensure)
        ),
        settings=SimpleNamespace(state_dir=state_dir, node_name="n1"),
        instance="",
    )
    return cast(Controllers, SimpleNamespace(host=host, images=RecordingImports(state_dir)))


@pytest.fixture
async def api(
    registry: Registry,
    certs: Certs,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> AsyncIterator[str]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"token": TOKENS["admin"], "user": "alice", "role": "admin"},
                    {"token": TOKENS["viewer"], "user": "victor", "role": "viewer"},
                    {
                        "token": TOKENS["editor"],
                        "user": "eve",
                        "role": "editor",
                        "realms": ["imgs"],
                    },
                    {
                        "token": TOKENS["stranger"],
                        "user": "sam",
                        "role": "editor",
                        "realms": ["other"],
                    },
                ]
            }
        )
    )
    address = f"127.0.0.1:{free_tcp_port()}"
    settings = ApiSettings(
        socket_path=None,
        tcp_address=address,
        tls_cert_file=certs.cert,
        tls_key_file=certs.key,
        tokens_file=tokens,
        request_timeout=10,
    )
    runner = await build_runner(settings=settings, registry=registry)
    ImageRoutes(controllers=empty_node(tmp_path), registry=registry).add_routes(runner.app)
    realm = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "imgs"}}
    )
    assert isinstance(realm, Realm)
    await registry.create(realm)
    await runner.start()
    try:
        yield f"https://{address}"
    finally:
        await runner.stop()
        await registry.delete(Kind.REALM, ("imgs",))


async def _codes(api: str, ca: Path, who: str) -> dict[str, int]:
    context = ssl.create_default_context(cafile=str(ca))
    calls: dict[str, tuple[str, str, dict[str, str]]] = {
        "ls": ("GET", IMAGES, {}),
        "inspect": ("GET", f"{IMAGES}/busybox", {}),
        "pull": ("POST", f"{IMAGES}/pull", {}),  # no image=: 400 once authorised
        "rm": ("DELETE", f"{IMAGES}/busybox", {}),
        "prune": ("POST", f"{IMAGES}/prune", {}),
    }
    codes: dict[str, int] = {}
    async with aiohttp.ClientSession(
        base_url=api,
        connector=aiohttp.TCPConnector(ssl=context),
        headers={"Authorization": f"Bearer {TOKENS[who]}"},
    ) as http:
        for verb, (method, path, params) in calls.items():
            async with http.request(method, path, params=params) as response:
                codes[verb] = response.status
    return codes


async def test_viewers_read_editors_of_the_realm_write(
    api: str,
    certs: Certs,  # noqa: F811 - the fixture imported above
) -> None:
    authorised = {"ls": 200, "inspect": 404, "pull": 400, "rm": 404, "prune": 200}
    assert await _codes(api, certs.ca, "admin") == authorised
    assert await _codes(api, certs.ca, "editor") == authorised
    assert await _codes(api, certs.ca, "viewer") == {
        "ls": 200,
        "inspect": 404,
        "pull": 403,
        "rm": 403,
        "prune": 403,
    }
    assert await _codes(api, certs.ca, "stranger") == dict.fromkeys(authorised, 403)


async def test_only_an_admins_import_is_shared_with_the_nodes_other_realms(
    api: str,
    certs: Certs,  # noqa: F811 - the fixture imported above
) -> None:
    """The node's archive store answers every realm's cells before a registry: an editor's
    archive kept there under a name another realm uses (nginx:1.27, or the image of an
    admin's privileged cell) ran in that realm. Shown against a running kukeond: an
    editor of realm team imported docker.io/library/poison:1 and an admin's cell of realm
    bench naming it ran the editor's image."""
    IMPORTS.clear()
    context = ssl.create_default_context(cafile=str(certs.ca))
    for who in ("editor", "admin"):
        async with (
            aiohttp.ClientSession(
                base_url=api,
                connector=aiohttp.TCPConnector(ssl=context),
                headers={"Authorization": f"Bearer {TOKENS[who]}"},
            ) as http,
            http.post(IMAGES, data=b"an archive") as response,
        ):
            assert response.status == 201, await response.text()
    assert IMPORTS == [("imgs.kukeon.io", False), ("imgs.kukeon.io", True)]
