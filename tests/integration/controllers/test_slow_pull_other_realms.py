"""A registry a realm's editor controls, dripping a layer just above the registry client's
pace (16 KiB a minute), holds no other realm's pull while image storage limits apply: the
other realm's image, from another registry, is pulled into its namespace while the slow
one is still fetching. Real containerd; both registries on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kukeon.controllers.imagearchives import ImageArchives
from kukeon.controllers.images import ImageProvider, ImageStorageLimits
from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.oci import host_platform
from tests.fixtures.containerd import clean_namespace
from tests.integration.containerd.test_pull_registry import (
    MEDIA_TYPE_MANIFEST,
    _tiny_image,
)
from tests.unit.runtime.test_hostile_registry import Hostile, serve
from tests.unit.runtime.test_registry_client import FakeImage, make_image

pytestmark = pytest.mark.integration

CHUNK = 400
"""Bytes the slow registry sends each second: 24000 a minute, past the 16 KiB pace, so
the 300 kB layer takes 12 minutes."""


class Slow:
    """Answers a blob `CHUNK` bytes a second; `fetching` is set once the layer is asked."""

    def __init__(self) -> None:
        self.fetching = asyncio.Event()

    async def __call__(self, request: web.Request, body: bytes) -> web.StreamResponse:
        self.fetching.set()
        response = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await response.prepare(request)
        for start in range(0, len(body), CHUNK):
            await response.write(body[start : start + CHUNK])
            await asyncio.sleep(1.0)
        return response


def runnable_image() -> FakeImage:
    """A small image whose layer unpacks (a tar), as a registry serves it."""
    descriptor, blobs = _tiny_image(host_platform().architecture)
    manifest = blobs[str(descriptor["digest"])]
    parsed = json.loads(manifest)
    return FakeImage(
        manifest=manifest,
        manifest_digest=str(descriptor["digest"]),
        config=blobs[parsed["config"]["digest"]],
        layers=[blobs[layer["digest"]] for layer in parsed["layers"]],
        diff_ids=[],
        media_type=MEDIA_TYPE_MANIFEST,
    )


@pytest.fixture
async def namespaces(containerd_client: ContainerdClient) -> AsyncIterator[tuple[str, str]]:
    """Two realms' namespaces, emptied and deleted afterwards."""
    names = (f"kt-{secrets.token_hex(4)}", f"kt-{secrets.token_hex(4)}")
    for name in names:
        await containerd_client.namespaces.ensure(name, labels={"kukeon.io/test": "true"})
    try:
        yield names
    finally:
        for name in names:
            await clean_namespace(containerd_client, name)


async def test_a_realms_slow_pull_holds_no_other_realms_pull(
    containerd_client: ContainerdClient, namespaces: tuple[str, str], tmp_path: Path
) -> None:
    """Before: the other realm's pull waited for the slow one (one node-wide lock for every
    limited pull and import), here 12 minutes."""
    slow_registry = Hostile(make_image(layer_count=1))
    drip = Slow()
    slow_registry.blob = drip
    servers = [await serve(slow_registry), await serve(Hostile(runnable_image()))]
    slow_ref, fast_ref = (f"127.0.0.1:{server.port}/app:1" for server in servers)
    images = ImageProvider(
        containerd=containerd_client,
        archives=ImageArchives(tmp_path / "images"),
        insecure_registries=["127.0.0.1"],
        storage=ImageStorageLimits(realm=64 << 20, node=1 << 30),
    )
    mine, theirs = namespaces
    slow = asyncio.create_task(images.pull(namespace=mine, image=slow_ref, credentials=()))
    try:
        await asyncio.wait_for(drip.fetching.wait(), 30)
        pulled = images.pull(namespace=theirs, image=fast_ref, credentials=())
        assert await asyncio.wait_for(pulled, 60) == fast_ref
        assert not slow.done()  # still dripping
        assert [image.name for image in await containerd_client.images(theirs).list()] == [fast_ref]
    finally:
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await slow
        await close(servers)
    assert await containerd_client.images(mine).list() == []


async def close(servers: list[TestServer]) -> None:
    for server in servers:
        await server.close()
