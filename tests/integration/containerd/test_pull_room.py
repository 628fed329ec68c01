"""A registry describing a layer larger than the content store's disk has free gets no
request for any blob: the pull is refused once the manifest is read, naming the bytes and
the room (before, with no image storage limit set, kukeond wrote what came until that
disk was full). Against a real containerd, the registry an in-process hostile one."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.pull import PullTooLargeError, pull_image
from tests.unit.runtime.test_hostile_registry import Hostile, plain, serve
from tests.unit.runtime.test_registry_client import digest_of, make_image

pytestmark = pytest.mark.integration
TIB = 1 << 40


@pytest.fixture
async def huge() -> AsyncIterator[tuple[str, list[str]]]:
    """A registry whose image's one layer is described as 1 TiB; and the layer's GETs."""
    image = make_image(layer_count=1)
    manifest = json.loads(image.manifest)
    manifest["layers"][0]["size"] = TIB
    body = json.dumps(manifest).encode()
    registry = Hostile(dataclasses.replace(image, manifest=body, manifest_digest=digest_of(body)))
    asked: list[str] = []

    async def blob(request: web.Request, data: bytes) -> web.StreamResponse:
        asked.append(request.path)
        return await plain(request, data)

    registry.blob = blob
    server = await serve(registry)
    try:
        yield f"127.0.0.1:{server.port}", asked
    finally:
        await server.close()


async def test_a_layer_past_the_content_stores_free_space_is_not_fetched(
    huge: tuple[str, list[str]], containerd_client: ContainerdClient, containerd_namespace: str
) -> None:
    host, asked = huge
    assert await containerd_client.content_root() is not None
    with pytest.raises(PullTooLargeError) as refused:
        await pull_image(
            containerd_client, containerd_namespace, f"{host}/app:1", insecure_registries=[host]
        )
    message = str(refused.value)
    assert f"image '{host}/app:1': the blobs to fetch take " in message, message
    assert refused.value.need > TIB
    assert "as the registry describes them, more than the" in message, message
    assert "bytes free on its disk less" in message, message
    assert asked == []  # the layer
    assert await containerd_client.images(containerd_namespace).list() == []
