"""A pulled image whose layer is a gzip bomb is refused before it is unpacked or recorded,
and the lease takes its blobs with it: the same bound as an import
(``layersize``), on Debian's docker-registry on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.layersize import LayerTooLargeError, UnpackLimits
from kukeon.runtime.containerd.pull import pull_image
from tests.integration.containerd.test_pull_registry import Registry, registry, test_image
from tests.integration.daemon.test_image_unpack_bound import bomb

__all__ = ["registry", "test_image"]  # that module's fixtures, used here

pytestmark = pytest.mark.integration
BOUND = 16 * 1024 * 1024


async def test_a_pulled_bomb_layer_is_refused_and_nothing_of_it_is_left(
    registry: Registry,
    containerd_client: ContainerdClient,
    containerd_namespace: str,
    tmp_path: Path,
) -> None:
    archive, layer, stored = await asyncio.to_thread(bomb)
    path = tmp_path / "bomb.tar"
    path.write_bytes(archive)
    reference = f"{registry.host}/kukeon/bomb:1"
    await asyncio.to_thread(registry.push, path, reference)

    client, namespace = containerd_client, containerd_namespace
    saved = client.unpack_limits
    client.unpack_limits = UnpackLimits(max_bytes=BOUND)
    try:
        with pytest.raises(LayerTooLargeError) as refused:
            await pull_image(
                client,
                namespace,
                reference,
                credentials=registry.credentials(),
                insecure_registries=registry.listed,
            )
    finally:
        client.unpack_limits = saved
    message = str(refused.value)
    assert f"layer {layer} ({stored} bytes compressed) inflates past" in message, message
    assert f"{BOUND} bytes unpacking may take (kukeond's imageUnpackedMaxBytes)" in message
    assert [image.name for image in await client.images(namespace).list()] == []
    assert not await client.content(namespace).has_blob(layer)
    assert await client.snapshots(namespace).list() == []
