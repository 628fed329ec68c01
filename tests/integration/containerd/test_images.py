"""Namespaces, the content store and OCI archive import against a real containerd."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.runtime.containerd import (
    BlobDigestMismatchError,
    ContainerdClient,
    ImageConfig,
    ImageNotFoundError,
    InvalidImageArchiveError,
    NamespaceNotEmptyError,
    chain_ids,
)
from kukeon.runtime.containerd.content import LABEL_GC_REF_SNAPSHOT
from kukeon.runtime.containerd.errors import ContainerdCallError
from tests.fixtures.containerd import BusyboxImage, clean_namespace
from tests.integration.daemon.test_image_import_bound import oci_archive

pytestmark = pytest.mark.integration


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_namespace_ensure_labels_list_and_delete(containerd_client: ContainerdClient) -> None:
    name = f"kt-{secrets.token_hex(4)}"
    namespaces = containerd_client.namespaces
    try:
        created = await namespaces.ensure(name, labels={"kukeon.io/realm": "one"})
        assert created.labels["kukeon.io/realm"] == "one"
        again = await namespaces.ensure(name, labels={"kukeon.io/realm": "two", "x": "y"})
        assert again.labels == {"kukeon.io/realm": "two", "x": "y"}
        assert name in {ns.name for ns in await namespaces.list()}
    finally:
        assert await namespaces.delete(name) is True
    assert await namespaces.delete(name) is False
    assert name not in {ns.name for ns in await namespaces.list()}


async def test_content_store_writes_verifies_and_reads_blobs(
    containerd_client: ContainerdClient, containerd_namespace: str
) -> None:
    data = secrets.token_bytes(3000)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    async with containerd_client.leases(containerd_namespace).lease() as lease:
        store = containerd_client.content(containerd_namespace, lease=lease)
        assert await store.has_blob(digest) is False
        await store.write_blob(digest=digest, size=len(data), chunks=_chunks(data))
        assert await store.has_blob(digest) is True
        assert await store.read_blob(digest) == data
        # Writing it again is a no-op.
        await store.write_blob(digest=digest, size=len(data), chunks=_chunks(data))

        wrong = f"sha256:{hashlib.sha256(b'other').hexdigest()}"
        with pytest.raises(BlobDigestMismatchError) as raised:
            await store.write_blob(digest=wrong, size=len(data), chunks=_chunks(data))
        assert wrong in str(raised.value)
        assert await store.has_blob(wrong) is False


class _SourceBrokeError(Exception):
    pass


async def test_a_source_failing_midway_is_the_writes_failure(
    containerd_client: ContainerdClient, containerd_namespace: str
) -> None:
    """grpc.aio cancels the write when its request iterator fails and drops the failure:
    before, the write raised CancelledError, which a TaskGroup of a pull's layers took as
    no failure (the pull went on, "content ... not found" later, a registry's real fault
    untold)."""
    data = secrets.token_bytes(3000)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"

    async def breaking() -> AsyncIterator[bytes]:
        yield data[:1000]
        raise _SourceBrokeError("the registry went too slow")

    async with containerd_client.leases(containerd_namespace).lease() as lease:
        store = containerd_client.content(containerd_namespace, lease=lease)
        with pytest.raises(_SourceBrokeError, match="too slow"):
            await store.write_blob(digest=digest, size=len(data), chunks=breaking())
        assert await store.has_blob(digest) is False
        # Nothing half-written stands in the way of writing it whole.
        await store.write_blob(digest=digest, size=len(data), chunks=_chunks(data))
        assert await store.read_blob(digest) == data


async def test_import_archive_records_unpacks_and_reads_the_config(
    containerd_client: ContainerdClient,
    containerd_namespace: str,
    containerd_test_image: BusyboxImage,
) -> None:
    images = containerd_client.images(containerd_namespace)
    [image] = await images.import_archive(containerd_test_image.archive)
    assert image.name == containerd_test_image.name
    assert image.target.media_type == "application/vnd.oci.image.manifest.v1+json"

    config = await images.config(image.name)
    assert config == ImageConfig(
        cmd=("sh",),
        env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
        working_dir="/",
    )
    manifest = await images.manifest(image.name)
    content = containerd_client.content(containerd_namespace)
    config_info = await content.info(manifest.config.digest)
    snapshots = containerd_client.snapshots(containerd_namespace)
    top = config_info.labels[f"{LABEL_GC_REF_SNAPSHOT}.overlayfs"]
    assert await snapshots.exists(top)
    layer_info = await content.info(manifest.layers[0].digest)
    assert chain_ids([layer_info.labels["containerd.io/uncompressed"]]) == [top]

    # Importing again changes nothing; unpacking again finds the snapshot.
    [again] = await images.import_archive(containerd_test_image.archive)
    assert again.target == image.target
    assert await images.unpack(image.name) == top

    renamed = await images.import_archive(
        containerd_test_image.archive, name="kukeon.io/test/renamed:v1"
    )
    assert [i.name for i in renamed] == ["kukeon.io/test/renamed:v1"]


async def test_missing_image_and_bad_archive_give_clear_errors(
    containerd_client: ContainerdClient, containerd_namespace: str, tmp_path: Path
) -> None:
    images = containerd_client.images(containerd_namespace)
    with pytest.raises(ImageNotFoundError) as raised:
        await images.config("kukeon.io/test/missing:v9")
    assert "kukeon.io/test/missing:v9" in str(raised.value)
    assert containerd_namespace in str(raised.value)

    not_a_tar = tmp_path / "image.tar"
    not_a_tar.write_bytes(b"this is not a tar archive")
    with pytest.raises(InvalidImageArchiveError) as bad:
        await images.import_archive(not_a_tar)
    assert str(not_a_tar) in str(bad.value)


async def test_a_namespace_with_images_is_not_deleted(
    containerd_client: ContainerdClient, containerd_test_image: BusyboxImage
) -> None:
    name = f"kt-{secrets.token_hex(4)}"
    await containerd_client.namespaces.ensure(name)
    try:
        await containerd_client.images(name).import_archive(containerd_test_image.archive)
        with pytest.raises(NamespaceNotEmptyError) as raised:
            await containerd_client.namespaces.delete(name)
        assert name in str(raised.value)
    finally:
        await clean_namespace(containerd_client, name)
    assert name not in {ns.name for ns in await containerd_client.namespaces.list()}


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 1  # /dev/mem
    if kind != tarfile.REGTYPE:
        return info, None
    info.size = 1
    return info, b"x"


def _hostile_layers(outside: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes | None]]]:
    return {
        "absolute": [_entry(f"{outside}/absolute")],
        "dotdot": [_entry(f"{'../' * 12}{outside}/dotdot")],
        "symlink-out-then-through": [
            _entry("out", tarfile.SYMTYPE, str(outside)),
            _entry("out/through"),
        ],
        "device": [_entry("mem", tarfile.CHRTYPE)],
        "opaque-root": [_entry(".wh..wh..opq")],
        "hardlink-out": [_entry("hl", tarfile.LNKTYPE, "/etc/passwd")],
        "hardlink-dotdot": [_entry("hl", tarfile.LNKTYPE, f"{'../' * 12}etc/passwd")],
        "whiteout-of-root": [_entry(".wh.."), _entry("a")],
    }


REFUSED = {
    "hardlink-out": "link /etc/passwd /hl: no such file or directory (in the layer's snapshot)",
    "hardlink-dotdot": "link /etc/passwd /hl: no such file or directory (in the layer's snapshot)",
    "whiteout-of-root": "invalid whiteout name: .wh..: invalid archive (in the layer's snapshot)",
}


@pytest.mark.parametrize("case", list(_hostile_layers(Path("/x"))))
async def test_a_hostile_layer_touches_nothing_outside_its_snapshot(
    case: str, containerd_client: ContainerdClient, containerd_namespace: str, tmp_path: Path
) -> None:
    """Absolute paths, ``..``, a symlink out then a file through it, a hard link out, a
    device node, whiteouts of the root: containerd's apply keeps each in the snapshot (a
    device node is the container's device rules' to deny, as Docker's) or refuses the
    layer; a refusal says what, from the snapshot's root: before, it named the directory
    containerd mounted the snapshot on (``.../tmpmounts/containerd-mount1234/etc/passwd``)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    passwd_links = os.stat("/etc/passwd").st_nlink
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in _hostile_layers(outside)[case]:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    archive = tmp_path / "hostile.tar"
    archive.write_bytes(oci_archive(layer.getvalue(), name=f"kukeon.io/test/hostile-{case}:1"))
    images = containerd_client.images(containerd_namespace)
    if case in REFUSED:
        with pytest.raises(ContainerdCallError) as refused:
            await images.import_archive(archive)
        message = str(refused.value)
        assert REFUSED[case] in message, message
        assert "tmpmounts" not in message
        assert "mount callback" not in message
    else:
        [image] = await images.import_archive(archive)
        assert await containerd_client.snapshots(containerd_namespace).exists(
            await images.unpack(image.name)
        )
    assert list(outside.iterdir()) == []
    assert os.stat("/etc/passwd").st_nlink == passwd_links
