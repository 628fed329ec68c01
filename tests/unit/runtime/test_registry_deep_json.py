"""A registry (or its token service) that answers JSON nested past Python's recursion limit.

Python's ``json.loads`` recurses once per level: such a document raised ``RecursionError``,
which no parser caught, so a pull from a registry a realm's editor controls ended in an
unhandled error (a 500 on ``kukectl image pull``) instead of a RegistryError saying why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kukeon.runtime.containerd.oci import MEDIA_TYPE_OCI_MANIFEST
from kukeon.runtime.containerd.registryerrors import (
    ManifestUnknownError,
    RegistryUnauthorizedError,
    UnsupportedManifestError,
)
from kukeon.runtime.containerd.types import RegistryCredential
from tests.fixtures.services import free_tcp_port
from tests.unit.runtime.test_registry_client import (
    FakeRegistry,
    MemoryBlobStore,
    make_image,
    pull,
    registry,
)

__all__ = ["registry"]  # the fake registry fixture, used here

# 20,000 levels in 40 kB: past the recursion limit, within every body limit (errors: 64 KiB).
DEEP = b"[" * 20_000 + b"]" * 20_000


async def test_a_manifest_nested_too_deeply_is_refused(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.manifests[("app", "latest")] = (MEDIA_TYPE_OCI_MANIFEST, DEEP)
    with pytest.raises(UnsupportedManifestError, match="nested too deeply"):
        await pull(host, "app", MemoryBlobStore())
    fake.content_type_override = "application/json"  # the media type read from the document
    with pytest.raises(UnsupportedManifestError, match="nested too deeply"):
        await pull(host, "app", MemoryBlobStore())


async def test_a_token_nested_too_deeply_is_no_token(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.auth = "bearer"
    fake.token_body = DEEP
    fake.add_image("app", "latest", make_image())
    creds = [RegistryCredential(host, "alice", "s3cret")]
    with pytest.raises(RegistryUnauthorizedError, match="returned no token"):
        await pull(host, "app", MemoryBlobStore(), credentials=creds)


@pytest.fixture
async def deep_errors() -> AsyncIterator[str]:
    """A registry whose every answer is a 404 with a deeply nested body."""

    async def not_found(_request: web.Request) -> web.Response:
        return web.Response(status=404, body=DEEP, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    server = TestServer(app, host="127.0.0.1", port=free_tcp_port())
    await server.start_server()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.close()


async def test_an_error_nested_too_deeply_is_said_without_its_body(deep_errors: str) -> None:
    with pytest.raises(ManifestUnknownError) as raised:
        await pull(deep_errors, "app", MemoryBlobStore())
    assert str(raised.value).endswith("manifest unknown")
