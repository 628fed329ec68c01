"""A layer is measured once decompressed before containerd unpacks it: a gzip bomb layer
(100 MiB of zeros, ~100 KiB as stored) is refused with a 422 naming the layer and the
bound (``imageUnpackedMaxBytes``, here 16 MiB), and nothing of it is left: no image record,
no blob, no snapshot. A cell naming such an image already recorded (not unpacked) fails
ImageUnavailable saying the same. Normal images still import, unpack and run, and their
layers' counts are kept on their blobs. Against a real kukeond and its containerd.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from backports import zstd

from kukeon.api import Cell, Kind
from kukeon.runtime.containerd.layersize import (
    LABEL_UNPACKED_ENTRIES,
    LABEL_UNPACKED_SIZE,
    LayerTooLargeError,
    LayerTooManyEntriesError,
    UnpackLimits,
)
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container
from tests.integration.daemon.test_image_import_bound import (
    API,
    ArchiveImage,
    left_on_disk,
    oci_archive,
    oci_archive_of,
    session,
)

MiB = 1024 * 1024
BOUND = 16 * MiB
pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(image_unpacked_max_bytes=BOUND),
]

BOMB = "kukeon.io/test/layer-bomb:1"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


def gzip_layer_image(tar: bytes, name: str) -> tuple[bytes, str]:
    """An OCI archive whose one layer is ``tar`` gzipped; and that layer's digest."""
    layer = gzip.compress(tar, compresslevel=9)
    diff_id = f"sha256:{hashlib.sha256(tar).hexdigest()}"
    archive = oci_archive(layer, name=name, media_type=GZIP_LAYER, diff_id=diff_id)
    return archive, f"sha256:{hashlib.sha256(layer).hexdigest()}"


def bomb() -> tuple[bytes, str, int]:
    zeros = bytes(100 * MiB)  # tar blocks of zeros: an empty tar, which would unpack
    archive, digest = gzip_layer_image(zeros, BOMB)
    return archive, digest, len(gzip.compress(zeros, compresslevel=9))


async def nothing_of(k: Kukeond, layer: str) -> None:
    images = k.containerd.images(k.namespace)
    assert BOMB not in [image.name for image in await images.list()]
    assert not await k.containerd.content(k.namespace).has_blob(layer)
    snapshots = await k.containerd.snapshots(k.namespace).list()
    assert not [s.name for s in snapshots if s.name.startswith("kukeon-extract")]


async def refused_import(k: Kukeond, archive: bytes) -> str:
    """The message of the 422 that importing ``archive`` into the test's realm answers."""
    url = f"{API}/realms/{k.realm}/images"
    async with session(k) as http, http.post(url, data=archive) as response:
        status = await response.json()
        assert response.status == 422, status
    return str(status["message"])


async def test_a_gzip_bomb_layer_is_refused_and_nothing_of_it_is_left(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    before = left_on_disk(k)
    archive, layer, stored = await asyncio.to_thread(bomb)
    assert len(archive) < 256 * 1024  # well within imageImportMaxBytes as sent and unpacked

    message = await refused_import(k, archive)
    assert f"layer {layer} ({stored} bytes compressed) inflates past" in message, message
    assert f"more than the {BOUND} bytes unpacking may take" in message, message
    assert "imageUnpackedMaxBytes" in message, message
    # Stopped within a step (1 MiB) of the bound: the 100 MiB were never inflated.
    inflated = int(message.split("inflates past ")[1].split(" ")[0])
    assert BOUND < inflated <= BOUND + MiB, message

    assert left_on_disk(k) == before
    await nothing_of(k, layer)


async def test_a_normal_image_imports_runs_and_its_layer_is_counted_once(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()  # imports the busybox image: counted and unpacked under the bound
    archive, layer = gzip_layer_image(bytes(2 * MiB), "kukeon.io/test/small-gzip:1")
    url = f"{API}/realms/{k.realm}/images"
    async with session(k) as http, http.post(url, data=archive) as response:
        answer = await response.json()
        assert response.status == 201, answer
    info = await k.containerd.content(k.namespace).info(layer)
    assert info.labels[LABEL_UNPACKED_SIZE] == str(2 * MiB)
    assert info.labels[LABEL_UNPACKED_ENTRIES] == "0"  # zeros: an empty tar

    key = cell_key(k, "runs")
    await k.apply(cell_doc(k, "runs", [container(k, "app")]))
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(ready, Cell)


async def refused_under(
    k: Kukeond, limits: UnpackLimits, archive: bytes, tmp_path: Path, error: type[Exception]
) -> str:
    """The message of ``error`` importing ``archive`` under ``limits`` (kukeond's own
    restored after)."""
    path = tmp_path / "image.tar"
    path.write_bytes(archive)
    saved = k.containerd.unpack_limits
    k.containerd.unpack_limits = limits
    try:
        with pytest.raises(error) as refused:
            await k.containerd.images(k.namespace).import_archive(path)
    finally:
        k.containerd.unpack_limits = saved
    return str(refused.value)


async def test_the_free_space_of_the_snapshotter_disk_less_the_reserve_bounds_it(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """containerd says where its snapshotter keeps snapshots; an unpack leaves that disk
    its reserve (kukeond: the DiskPressure threshold). A reserve of the whole disk: no room."""
    k = kukeond
    root = await k.containerd.snapshotter_root("overlayfs")
    assert root is not None
    assert await asyncio.to_thread(Path(root).is_dir), root
    archive, layer = gzip_layer_image(bytes(2 * MiB), "kukeon.io/test/no-room:1")
    limits = UnpackLimits(reserve=lambda size: size)
    message = await refused_under(k, limits, archive, tmp_path, LayerTooLargeError)
    assert f"layer {layer}" in message, message
    assert f"bytes free in {root} less" in message, message
    assert "DiskPressure" in message, message
    assert not await k.containerd.content(k.namespace).has_blob(layer)


async def test_the_free_inodes_of_the_snapshotter_disk_less_the_reserve_bound_it(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """A layer's entries are inodes: an unpack leaves the snapshotter's disk its inode
    reserve (kukeond: the DiskPressure threshold). A reserve of every inode: no room."""
    k = kukeond
    root = await k.containerd.snapshotter_root("overlayfs")
    assert root is not None
    if (await asyncio.to_thread(os.statvfs, root)).f_files == 0:
        pytest.skip(f"{root} has no inode limit")
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as writer:
        for number in range(3):
            writer.addfile(tarfile.TarInfo(f"f{number}"))
    archive, layer = gzip_layer_image(tar.getvalue(), "kukeon.io/test/no-inodes:1")
    limits = UnpackLimits(inode_reserve=lambda files: files)
    message = await refused_under(k, limits, archive, tmp_path, LayerTooManyEntriesError)
    assert f"layer {layer} creates more than 1 files and directories" in message, message
    assert "more than the 0 inodes unpacking may take" in message, message
    assert f"inodes free in {root} less" in message, message
    assert not await k.containerd.content(k.namespace).has_blob(layer)


async def test_the_images_of_one_archive_share_the_room(kukeond: Kukeond) -> None:
    """Two images of one archive, each within the room but not both: the import is refused
    whole, naming the second's layer and what the first takes; two sharing one layer
    count it once."""
    k = kukeond
    await k.hierarchy()
    before = left_on_disk(k)
    ten = bytes(10 * MiB)  # tar blocks of zeros: empty tars, which unpack
    first = gzip_image(ten, "kukeon.io/test/share:1")
    second = gzip_image(ten + bytes(1024), "kukeon.io/test/share:2")
    second_layer = f"sha256:{hashlib.sha256(second.layer).hexdigest()}"
    archive = await asyncio.to_thread(oci_archive_of, [first, second])
    message = await refused_import(k, archive)
    assert f"image 'kukeon.io/test/share:2': layer {second_layer}" in message, message
    assert f"after {10 * MiB} bytes of the layers unpacked before it" in message, message
    assert f"more than the {BOUND} bytes unpacking may take" in message, message
    assert left_on_disk(k) == before
    names = [image.name for image in await k.containerd.images(k.namespace).list()]
    assert not [name for name in names if name.startswith("kukeon.io/test/share")], names
    assert not await k.containerd.content(k.namespace).has_blob(second_layer)

    also_first = first._replace(name="kukeon.io/test/share:3")  # the same layer
    archive = await asyncio.to_thread(oci_archive_of, [first, also_first])
    url = f"{API}/realms/{k.realm}/images"
    async with session(k) as http, http.post(url, data=archive) as response:
        answer = await response.json()
        assert response.status == 201, answer
    names = [image.name for image in await k.containerd.images(k.namespace).list()]
    assert {"kukeon.io/test/share:1", "kukeon.io/test/share:3"} <= set(names), names


def gzip_image(tar: bytes, name: str) -> ArchiveImage:
    """An image of an archive whose one layer is ``tar`` gzipped."""
    diff_id = f"sha256:{hashlib.sha256(tar).hexdigest()}"
    return ArchiveImage(name, gzip.compress(tar, compresslevel=9), GZIP_LAYER, diff_id)


def zstd_layer_image(tar: bytes, name: str) -> tuple[bytes, str]:
    """An OCI archive whose one layer is ``tar`` zstd-compressed; and that layer's digest."""
    layer = zstd.compress(tar, level=19)
    diff_id = f"sha256:{hashlib.sha256(tar).hexdigest()}"
    archive = oci_archive(layer, name=name, media_type=ZSTD_LAYER, diff_id=diff_id)
    return archive, f"sha256:{hashlib.sha256(layer).hexdigest()}"


async def test_a_zstd_layer_is_counted_like_a_gzip_one(kukeond: Kukeond, tmp_path: Path) -> None:
    """A zstd layer's bytes and inodes are counted exactly (containerd then unpacks it to
    the diff id its config says), and past the inodes left it is refused like a gzip one."""
    k = kukeond
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as writer:
        for number in range(3):
            writer.addfile(tarfile.TarInfo(f"d/f{number}"))
    archive, layer = zstd_layer_image(tar.getvalue(), "kukeon.io/test/zstd:1")
    path = tmp_path / "zstd.tar"
    path.write_bytes(archive)
    images = k.containerd.images(k.namespace)
    [image] = await images.import_archive(path)
    await images.unpack(image.name)  # applied already: its top snapshot exists
    info = await k.containerd.content(k.namespace).info(layer)
    assert info.labels[LABEL_UNPACKED_SIZE] == str(len(tar.getvalue()))
    assert info.labels[LABEL_UNPACKED_ENTRIES] == "4"  # d and its three files

    if (await asyncio.to_thread(os.statvfs, tmp_path)).f_files == 0:
        return
    archive, layer = zstd_layer_image(tar.getvalue() + bytes(1024), "kukeon.io/test/zstd:2")
    limits = UnpackLimits(inode_reserve=lambda files: files)
    message = await refused_under(k, limits, archive, tmp_path, LayerTooManyEntriesError)
    assert f"layer {layer} creates more than 2 files and directories" in message, message
    assert not await k.containerd.content(k.namespace).has_blob(layer)


async def test_a_recorded_bomb_fails_its_cell_image_unavailable(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """An image recorded without being unpacked (as before this bound, or by hand): the
    unpack a container create asks for refuses it, and the cell says why."""
    k = kukeond
    await k.hierarchy()
    archive, layer, stored = await asyncio.to_thread(bomb)
    path = tmp_path / "bomb.tar"
    path.write_bytes(archive)
    await k.containerd.images(k.namespace).import_archive(path, unpack=False)

    key = cell_key(k, "bomb")
    await k.apply(cell_doc(k, "bomb", [{"id": "app", "image": BOMB, "command": "true"}]))
    failed = await k.wait_for(Kind.CELL, key, state="Failed", within=60)
    assert isinstance(failed, Cell)
    assert failed.status.reason == "ImageUnavailable", failed.status.message
    message = failed.status.message or ""
    assert f"layer {layer} ({stored} bytes compressed) inflates past" in message, message
    assert "imageUnpackedMaxBytes" in message, message
    snapshots = await k.containerd.snapshots(k.namespace).list()
    assert not [s.name for s in snapshots if s.name.startswith("kukeon-extract")]
