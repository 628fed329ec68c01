"""Image storage limits while pulls and imports run side by side: one realm's slow pull (a
registry dripping its layer) holds no other pull or import, of its realm or another, and
the blobs it is fetching count against the realm's and the node's limits until it ends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kukeon.controllers import images as provider_module
from kukeon.controllers.images import (
    ImageProvider,
    ImageStorageExceededError,
    ImageStorageLimits,
    ImageUnavailableError,
)
from tests.unit.controllers.test_image_provider import ARCHIVE_BLOBS, FakeImages, provider

SLOW = "slow.example/app:1"
FAST = "fast.example/app:1"
OTHER = "other.example/app:1"
BLOBS = {
    SLOW: {"sha256:slow-layer": 5000, "sha256:slow-config": 100},
    FAST: {"sha256:fast-layer": 2000, "sha256:fast-config": 100},
    OTHER: {"sha256:other-layer": 2000},
}
"""What each fake registry's manifest names."""


class Registries:
    """A fake `pull_image`: each reference's manifest names its `BLOBS`; a pull of `SLOW`
    fetches until `drip` is set (then fails, as a registry past the pace does), the others
    at once."""

    def __init__(self) -> None:
        self.drip = asyncio.Event()
        self.dripping = asyncio.Event()
        self.pulled: list[tuple[str, str]] = []

    async def pull_image(
        self, containerd: FakeImages, namespace: str, reference: Any, **kwargs: Any
    ) -> SimpleNamespace:
        name = str(reference)
        blobs = BLOBS[name]
        before_fetch = kwargs.get("before_fetch")
        if before_fetch is not None:
            await before_fetch(SimpleNamespace(blob_sizes=lambda: dict(blobs)))
        if name == SLOW:
            self.dripping.set()
            await self.drip.wait()
            raise OSError("too slow: the registry sent 1100 bytes in 60 s")
        containerd.blobs.setdefault(namespace, {}).update(blobs)
        containerd.present.setdefault(namespace, set()).add(name)
        self.pulled.append((namespace, name))
        return SimpleNamespace(name=name)


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> Registries:
    fake = Registries()

    async def user_database(content: Any, layers: Any) -> tuple[None, None]:
        return None, None

    monkeypatch.setattr(provider_module, "pull_image", fake.pull_image)
    monkeypatch.setattr(provider_module, "read_image_user_database", user_database)
    monkeypatch.setattr(provider_module, "parse_image_config", lambda data, *, image: ({}, []))
    return fake


async def dripping(
    images: ImageProvider, registries: Registries, namespace: str
) -> asyncio.Task[str]:
    """The slow pull into `namespace`, once it is fetching (its blobs claimed)."""
    task = asyncio.create_task(images.pull(namespace=namespace, image=SLOW, credentials=()))
    await asyncio.wait_for(registries.dripping.wait(), 5)
    return task


async def finished(task: asyncio.Task[str], registries: Registries) -> None:
    registries.drip.set()
    with pytest.raises(ImageUnavailableError, match="too slow"):
        await task


async def test_a_slow_pull_holds_no_other_realms_pull_or_import(
    tmp_path: Path, registries: Registries
) -> None:
    """Before: every limited pull and import waited for the one fetching (one node-wide
    lock), as long as its registry dripped."""
    images, containerd = provider(tmp_path)
    images.storage = ImageStorageLimits(realm=100_000, node=1_000_000)
    slow = await dripping(images, registries, "a")
    pulled = images.pull(namespace="b", image=FAST, credentials=())
    assert await asyncio.wait_for(pulled, 2) == FAST
    ready = images.ensure(namespace="b", image=OTHER, credentials=())
    assert (await asyncio.wait_for(ready, 2)).name == OTHER
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(b"oci archive")
    imported = images.import_archive(namespace="b", path=archive, share=False)
    await asyncio.wait_for(imported, 2)
    # Its own realm's other pulls do not wait either.
    assert await asyncio.wait_for(images.pull(namespace="a", image=FAST, credentials=()), 2)
    assert not slow.done()
    await finished(slow, registries)
    assert ("b", FAST) in registries.pulled
    assert containerd.blobs["b"]["sha256:l1"] == ARCHIVE_BLOBS["sha256:l1"]


async def test_the_blobs_a_pull_is_fetching_count_until_it_ends(
    tmp_path: Path, registries: Registries
) -> None:
    images, containerd = provider(tmp_path)
    containerd.blobs = {"a": {"sha256:held": 1000}, "b": {"sha256:held": 1000}}
    images.storage = ImageStorageLimits(realm=7000, node=8000)
    slow = await dripping(images, registries, "a")  # 5100 claimed: 6100 of 7000 in a
    # The node: 1000 held (shared, counted once) + 5100 claimed + 2100 is past 8000.
    with pytest.raises(ImageStorageExceededError, match="imageStorageMaxBytes") as node:
        await asyncio.wait_for(images.pull(namespace="b", image=FAST, credentials=()), 2)
    assert (node.value.used, node.value.adding) == (6100, 2100)
    # The realm (node unbounded): 6100 + 2000 is past 7000; b's realm is not a's.
    images.storage = ImageStorageLimits(realm=7000)
    with pytest.raises(ImageStorageExceededError, match="realmImageStorageBytes") as realm:
        await images.pull(namespace="a", image=OTHER, credentials=())
    assert (realm.value.used, realm.value.adding) == (6100, 2000)
    await images.pull(namespace="b", image=OTHER, credentials=())
    # A full realm's pull is refused before its manifest is read, claims counted.
    with pytest.raises(ImageStorageExceededError, match="6100 bytes of image content are held"):
        await images.room_left("a", 6100)
    # The same blobs claimed twice are fetched once: a second pull of SLOW into a fits.
    registries.dripping.clear()
    again = await dripping(images, registries, "a")
    await finished(slow, registries)
    await finished(again, registries)
    # Failed: nothing of it is held or claimed any more.
    await images.pull(namespace="a", image=OTHER, credentials=())
    images.storage = ImageStorageLimits(node=1000 + 2000 + 2100)  # other-layer: in a and b
    await images.pull(namespace="a", image=FAST, credentials=())
