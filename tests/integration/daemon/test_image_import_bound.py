"""An imported archive is bounded as sent and once decompressed (``imageImportMaxBytes``):
a small gzip bomb is refused with a 413 naming the limit, and nothing of it is left (the
upload's staging file, the archive store, containerd's content, an image record).

The bomb is a valid OCI archive: its one layer is 64 MiB of zeros (a tar holding nothing,
which unpacks), 65 KiB once gzipped; before the bound, the import wrote the 64 MiB into the
content store and recorded the image. Against a real kukeond and its containerd.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest

from kukeon.runtime.containerd.oci import host_architecture
from tests.fixtures.kukeond import Kukeond

LIMIT = 8 * 1024 * 1024
pytestmark = [pytest.mark.integration, pytest.mark.kukeond_config(image_import_max_bytes=LIMIT)]

API = "http://kukeond/apis/kukeon.io/v1beta1"
BOMB_NAME = "kukeon.io/test/bomb:1"


def _blob(
    tar: tarfile.TarFile, data: bytes, media_type: str, written: set[str] | None = None
) -> dict[str, Any]:
    """Add blob ``data`` (once: ``written`` holds the digests added already)."""
    digest = hashlib.sha256(data).hexdigest()
    if written is None or digest not in written:
        info = tarfile.TarInfo(f"blobs/sha256/{digest}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    if written is not None:
        written.add(digest)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class ArchiveImage(NamedTuple):
    """An image of an archive: its name and its one layer (``diff_id``, the digest of its
    tar once decompressed, for a compressed one)."""

    name: str
    layer: bytes
    media_type: str = "application/vnd.oci.image.layer.v1.tar"
    diff_id: str | None = None


def oci_archive(
    layer: bytes,
    *,
    name: str = BOMB_NAME,
    media_type: str = "application/vnd.oci.image.layer.v1.tar",
    diff_id: str | None = None,
) -> bytes:
    """An OCI archive (uncompressed) of one image, ``name``, whose one layer is ``layer``."""
    return oci_archive_of([ArchiveImage(name, layer, media_type, diff_id)])


def oci_archive_of(images: Sequence[ArchiveImage]) -> bytes:
    """An OCI archive (uncompressed) of ``images``, each of one layer (a blob two share is
    stored once)."""
    out = io.BytesIO()
    written: set[str] = set()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        roots = []
        for image in images:
            layer_descriptor = _blob(tar, image.layer, image.media_type, written)
            config = {
                "architecture": host_architecture(),
                "os": "linux",
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [image.diff_id or layer_descriptor["digest"]],
                },
                "config": {"Labels": {"kukeon.io/test-image": image.name}},
            }
            config_descriptor = _blob(
                tar,
                json.dumps(config).encode(),
                "application/vnd.oci.image.config.v1+json",
                written,
            )
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_descriptor,
                "layers": [layer_descriptor],
            }
            root = _blob(
                tar,
                json.dumps(manifest).encode(),
                "application/vnd.oci.image.manifest.v1+json",
                written,
            )
            root["annotations"] = {"io.containerd.image.name": image.name}
            roots.append(root)
        index = {"schemaVersion": 2, "manifests": roots}
        _add(tar, "index.json", json.dumps(index).encode())
    return out.getvalue()


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


def left_on_disk(k: Kukeond) -> list[str]:
    """Files of the image staging directory and the archive store."""
    images = Path(k.config.state_dir) / "images"
    if not images.exists():
        return []
    return sorted(str(p.relative_to(images)) for p in images.rglob("*") if p.is_file())


async def test_a_gzip_bomb_is_refused_and_nothing_of_it_is_left(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    before = left_on_disk(k)
    zeros = bytes(64 * 1024 * 1024)  # 128 Ki tar blocks of zeros: an empty layer
    bomb = gzip.compress(oci_archive(zeros), compresslevel=9)
    assert len(bomb) < 256 * 1024  # small as sent; 64 MiB and more once decompressed
    layer_digest = f"sha256:{hashlib.sha256(zeros).hexdigest()}"

    async with session(k) as http:
        async with http.post(f"{API}/realms/{k.realm}/images", data=bomb) as response:
            status = await response.json()
            assert response.status == 413, status
        assert status["kind"] == "Status"
        assert status["reason"] == "RequestEntityTooLarge"
        assert f"larger than the limit of {LIMIT} bytes once decompressed" in status["message"]
        assert "imageImportMaxBytes" in status["message"]

        async with http.get(f"{API}/realms/{k.realm}/images") as response:
            names = [item["name"] for item in (await response.json())["items"]]
        assert BOMB_NAME not in names

    assert left_on_disk(k) == before  # the staging file went; the store kept nothing
    assert not await k.containerd.content(k.namespace).has_blob(layer_digest)


async def test_an_announced_body_over_the_bound_is_refused_before_it_is_read(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    async with session(k) as http:
        headers = {"Content-Length": str(LIMIT + 1)}

        async def body() -> Any:
            yield bytes(LIMIT + 1)

        async with http.post(
            f"{API}/realms/{k.realm}/images", data=body(), headers=headers
        ) as response:
            status = await response.json()
            assert response.status == 413, status
    assert f"larger than the limit of {LIMIT} bytes (kukeond's" in status["message"]


async def test_a_gzipped_archive_within_the_bound_imports(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    archive = gzip.compress(oci_archive(bytes(1024 * 1024)))  # 1 MiB of zeros: 1 KiB sent
    url = f"{API}/realms/{k.realm}/images"
    async with session(k) as http, http.post(url, data=archive) as response:
        answer = await response.json()
        assert response.status == 201, answer
    assert answer["images"] == [BOMB_NAME]


def _sparse_entry(name: str, size: int) -> bytes:
    """A tar entry ``name`` of ``size`` bytes stored sparse, all of it a hole (GNU tar's pax
    format 0.1): two header blocks, no data."""
    pax = tarfile.TarInfo("GNUSparseFile.0/x")
    pax.pax_headers = {
        "GNU.sparse.map": f"{size},0",
        "GNU.sparse.size": str(size),
        "GNU.sparse.name": name,
    }
    return pax.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def with_layer_sparse(archive: bytes, layer: bytes) -> bytes:
    """``archive`` with the entry of its blob ``layer`` stored sparse."""
    name = f"blobs/sha256/{hashlib.sha256(layer).hexdigest()}"
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.name == name:
                out.write(_sparse_entry(name, member.size))
                continue
            out.write(member.tobuf(tarfile.USTAR_FORMAT))
            data = tar.extractfile(member)
            assert data is not None
            out.write(data.read() + bytes(-member.size % tarfile.BLOCKSIZE))
    out.write(bytes(2 * tarfile.BLOCKSIZE))
    return out.getvalue()


def with_empty_long_names(archive: bytes, count: int) -> bytes:
    """``archive`` after ``count`` empty GNU long-name headers in a row."""
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, 0
    return header.tobuf(tarfile.GNU_FORMAT) * count + archive


async def test_a_sparse_layer_does_not_pass_the_bound(kukeond: Kukeond) -> None:
    """A layer's entry stored sparse is read back as its full size of zeros: on HEAD this
    12 KiB archive imported (201) a 64 MiB layer past the 8 MiB bound, written whole into
    the content store (an 8 GiB one just as well). Now refused; nothing of it is left."""
    k = kukeond
    await k.hierarchy()
    before = left_on_disk(k)
    zeros = bytes(64 * 1024 * 1024)
    archive = with_layer_sparse(oci_archive(zeros), zeros)
    assert len(archive) < 64 * 1024
    async with session(k) as http:
        async with http.post(f"{API}/realms/{k.realm}/images", data=archive) as response:
            status = await response.json()
            assert response.status == 422, status
        assert "is stored sparse" in status["message"]
        async with http.get(f"{API}/realms/{k.realm}/images") as response:
            names = [item["name"] for item in (await response.json())["items"]]
        assert BOMB_NAME not in names
    assert left_on_disk(k) == before
    assert not await k.containerd.content(k.namespace).has_blob(
        f"sha256:{hashlib.sha256(zeros).hexdigest()}"
    )


async def test_a_chain_of_long_names_is_a_422_not_a_500(kukeond: Kukeond) -> None:
    """tarfile reads a long name's member by recursion: 3,000 empty ones in a row (1.5 MB)
    were a RecursionError, answered 500 on HEAD."""
    k = kukeond
    await k.hierarchy()
    archive = with_empty_long_names(oci_archive(b""), 3000)
    url = f"{API}/realms/{k.realm}/images"
    async with session(k) as http, http.post(url, data=archive) as response:
        status = await response.json()
        assert response.status == 422, status
    assert "long names or pax headers in a row" in status["message"]


def _layered_archive(count: int) -> bytes:
    """An OCI archive of one image of ``count`` layers, each the same empty tar."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        layer = _blob(tar, bytes(1024), "application/vnd.oci.image.layer.v1.tar")
        config = {
            "architecture": host_architecture(),
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]] * count},
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _blob(
                tar, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"
            ),
            "layers": [layer] * count,
        }
        root = _blob(
            tar, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json"
        )
        root["annotations"] = {"io.containerd.image.name": BOMB_NAME}
        _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [root]}).encode())
    return out.getvalue()


async def test_an_image_of_more_layers_than_overlayfs_stacks_is_refused(kukeond: Kukeond) -> None:
    """No container could run it (the kernel stacks 500), and each layer was unpacked
    first, ~8.5 ms each: on HEAD 501 imported (201), and a 16 MiB manifest lists 100,000."""
    k = kukeond
    await k.hierarchy()
    url = f"{API}/realms/{k.realm}/images"
    async with session(k) as http, http.post(url, data=_layered_archive(501)) as response:
        status = await response.json()
        assert response.status == 422, status
    assert "501 layers, more than the 500 overlayfs can stack" in status["message"]
    assert not await k.containerd.content(k.namespace).has_blob(
        f"sha256:{hashlib.sha256(bytes(1024)).hexdigest()}"
    )
