"""OCI image archives: an oci-layout directory in a tar (maybe compressed), read in place.

``kukectl image import`` and the node's archive store hand kukeon such archives (``skopeo
copy ... oci-archive:``, ``docker save`` of recent versions, ``buildah push``). Their blobs
are read straight from the tar, never extracted to disk, and written into the content store
children first, as a pull writes them: layers, config, then the manifest labelled with
``containerd.io/gc.ref.content.*`` references, then any index. Every index, manifest and
config is checked against its descriptor's size and digest before it is parsed (layers are
checked by the content store as they stream in), and parsed by :mod:`.oci`, the model the
registry puller uses too. An index keeps every platform the archive holds; which one runs
is chosen when the image is unpacked, by the same platform matching as a pull.
"""

from __future__ import annotations

import asyncio
import posixpath
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from kukeon.runtime.containerd.archivetar import ArchiveTarError, open_archive_tar, read_entries
from kukeon.runtime.containerd.content import (
    LABEL_GC_REF_CONTENT,
    LABEL_UNCOMPRESSED,
    ContentStore,
)
from kukeon.runtime.containerd.errors import InvalidImageArchiveError, InvalidImageError
from kukeon.runtime.containerd.oci import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MAX_DOCUMENT_DEPTH,
    Descriptor,
    OciFormatError,
    content_mismatch,
    parse_config,
    parse_descriptor,
    parse_index,
    parse_json_object,
    parse_manifest,
)

ANNOTATION_IMAGE_NAME: Final = "io.containerd.image.name"
ANNOTATION_REF_NAME: Final = "org.opencontainers.image.ref.name"
_CHUNK_BYTES: Final = 1024 * 1024
_MAX_JSON_BYTES: Final = 16 * 1024 * 1024


class OciArchive:
    """Random access to the blobs of an oci-layout tar (blocking: call via to_thread)."""

    def __init__(self, path: Path, tar: tarfile.TarFile) -> None:
        self.path = str(path)
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in read_entries(tar):
            if member.isfile():
                self._members[posixpath.normpath(member.name.lstrip("/"))] = member

    @classmethod
    def open(cls, path: Path) -> OciArchive:
        """The archive at ``path``, its entries read (`archivetar`'s bounds)."""
        if not path.is_file():
            raise InvalidImageArchiveError(str(path), "no such file")
        try:
            tar = open_archive_tar(path)
        except ArchiveTarError as error:
            raise InvalidImageArchiveError(str(path), str(error)) from None
        except tarfile.TarError:
            # tarfile's own message lists every compression it tried, one per line.
            raise InvalidImageArchiveError(
                str(path), "not a tar archive (plain, gzip, bzip2 or xz)"
            ) from None
        except OSError as error:
            raise InvalidImageArchiveError(
                str(path), f"cannot be read: {error.strerror or type(error).__name__}"
            ) from None
        try:
            return cls(path, tar)
        except ArchiveTarError as error:
            tar.close()
            raise InvalidImageArchiveError(str(path), str(error)) from None
        except BaseException:
            tar.close()
            raise

    def close(self) -> None:
        self._tar.close()

    def _read_member(self, name: str, *, limit: int) -> bytes:
        member = self._members.get(name)
        if member is None:
            raise InvalidImageArchiveError(self.path, f"{name} is missing")
        if member.size > limit:
            raise InvalidImageArchiveError(self.path, f"{name} is larger than {limit} bytes")
        handle = self._tar.extractfile(member)
        assert handle is not None
        with handle:
            return handle.read()

    def index_entries(self) -> list[Descriptor]:
        """The images the archive names: the entries of its ``index.json``."""
        if "oci-layout" not in self._members:
            raise InvalidImageArchiveError(
                self.path, "no oci-layout file: not an OCI image layout archive"
            )
        data = self._read_member("index.json", limit=_MAX_JSON_BYTES)
        try:
            document = parse_json_object(data, "index.json")
        except OciFormatError as error:
            raise InvalidImageArchiveError(self.path, str(error)) from None
        entries = document.get("manifests")
        if not isinstance(entries, list) or not entries:
            raise InvalidImageArchiveError(self.path, "index.json lists no manifests")
        try:
            return [
                parse_descriptor(entry, f"index.json manifests[{number}]")
                for number, entry in enumerate(entries)
            ]
        except OciFormatError as error:
            raise InvalidImageArchiveError(self.path, str(error)) from None

    @staticmethod
    def _blob_name(digest: str) -> str:
        algorithm, _, encoded = digest.partition(":")
        return f"blobs/{algorithm}/{encoded}"

    def has_blob(self, digest: str) -> bool:
        return self._blob_name(digest) in self._members

    def blob_sizes(self) -> dict[str, int]:
        """Every blob the archive holds (``blobs/<algorithm>/<hex>``) and its size: at most
        what importing it writes into a content store."""
        sizes: dict[str, int] = {}
        for name, member in self._members.items():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "blobs":
                sizes[f"{parts[1]}:{parts[2]}"] = member.size
        return sizes

    def read_small(self, descriptor: Descriptor) -> bytes:
        """A JSON blob (index, manifest, config), refused unless it matches ``descriptor``."""
        data = self._read_member(self._blob_name(descriptor.digest), limit=_MAX_JSON_BYTES)
        if len(data) != descriptor.size:
            raise InvalidImageArchiveError(
                self.path,
                f"{descriptor.digest} is {len(data)} bytes, its descriptor says {descriptor.size}",
            )
        actual = content_mismatch(data, descriptor)
        if actual is not None:
            raise InvalidImageArchiveError(
                self.path, f"{descriptor.digest} does not match its content, which is {actual}"
            )
        return data

    async def stream(self, descriptor: Descriptor) -> AsyncIterator[bytes]:
        name = self._blob_name(descriptor.digest)
        member = self._members.get(name)
        if member is None:
            raise InvalidImageArchiveError(self.path, f"{name} is missing")
        handle = self._tar.extractfile(member)
        assert handle is not None
        try:
            while chunk := await asyncio.to_thread(handle.read, _CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()


def archive_image_name(entry: Descriptor, *, path: str, number: int) -> str:
    """The name an ``index.json`` entry gives its image (``io.containerd.image.name``, else
    a full reference in ``org.opencontainers.image.ref.name``)."""
    name = entry.annotations.get(ANNOTATION_IMAGE_NAME)
    if name:
        return name
    ref = entry.annotations.get(ANNOTATION_REF_NAME, "")
    # A full reference in ref.name (skopeo, buildah) is usable as is; a bare tag is not.
    if "/" in ref or ":" in ref.rpartition("/")[2]:
        return ref
    raise InvalidImageArchiveError(
        path,
        f"index.json manifests[{number}] has no {ANNOTATION_IMAGE_NAME} annotation and "
        f"ref.name {ref!r} is not a full reference; pass the image name",
    )


async def write_tree(
    archive: OciArchive,
    root: Descriptor,
    *,
    content: ContentStore,
    image: str,
    written: set[str] | None = None,
) -> None:
    """Write ``root`` and everything it references, children before parents.

    Each blob is written once (``written``: the digests written already, shared by the
    images of one archive): an index may name a child any number of times, and a tree of
    a few KiB naming one index a hundred times over three levels was a million writes.
    Indexes nest at most as deep as an image is resolved (`MAX_DOCUMENT_DEPTH`): deeper
    ones no cell could run, and a chain of thousands was a RecursionError."""
    await _TreeWriter(archive, content, image, set() if written is None else written).write(
        root, depth=1
    )


class _TreeWriter:
    def __init__(
        self, archive: OciArchive, content: ContentStore, image: str, written: set[str]
    ) -> None:
        self.archive = archive
        self.content = content
        self.image = image
        self.written = written

    async def write(self, root: Descriptor, *, depth: int) -> None:
        if root.digest in self.written:
            return
        if depth > MAX_DOCUMENT_DEPTH:
            raise InvalidImageArchiveError(
                self.archive.path,
                f"{self.image}: indexes nested more than {MAX_DOCUMENT_DEPTH - 1} deep",
            )
        data = await asyncio.to_thread(self.archive.read_small, root)
        if root.media_type in INDEX_MEDIA_TYPES:
            await self._write_index(root, data, depth=depth)
        elif root.media_type in MANIFEST_MEDIA_TYPES:
            await self._write_manifest(root, data)
        else:
            raise InvalidImageArchiveError(
                self.archive.path, f"{root.digest}: unsupported media type {root.media_type!r}"
            )
        self.written.add(root.digest)

    async def _write_index(self, root: Descriptor, data: bytes, *, depth: int) -> None:
        try:
            index = parse_index(data, root)
        except OciFormatError as error:
            raise InvalidImageArchiveError(self.archive.path, str(error)) from None
        labels: dict[str, str] = {}
        for number, child in enumerate(index.manifests):
            if not self.archive.has_blob(child.digest):
                continue  # other platforms are often left out of an archive
            await self.write(child, depth=depth + 1)
            labels[f"{LABEL_GC_REF_CONTENT}.m.{number}"] = child.digest
        await self.content.write_bytes(data, digest=root.digest, labels=labels)

    async def _write_manifest(self, root: Descriptor, data: bytes) -> None:
        archive, content = self.archive, self.content
        try:
            manifest = parse_manifest(data, root)
            config_data = await asyncio.to_thread(archive.read_small, manifest.config)
            diff_ids = parse_config(config_data).diff_ids
        except OciFormatError as error:
            raise InvalidImageError(self.image, str(error)) from None
        if len(diff_ids) != len(manifest.layers):
            raise InvalidImageArchiveError(
                archive.path,
                f"{self.image}: {len(manifest.layers)} layers but {len(diff_ids)} diff ids",
            )
        labels = {f"{LABEL_GC_REF_CONTENT}.config": manifest.config.digest}
        for number, (layer, diff_id) in enumerate(zip(manifest.layers, diff_ids, strict=True)):
            if layer.digest not in self.written:
                await content.write_blob(
                    digest=layer.digest,
                    size=layer.size,
                    chunks=archive.stream(layer),
                    labels={LABEL_UNCOMPRESSED: diff_id},
                )
                self.written.add(layer.digest)
            labels[f"{LABEL_GC_REF_CONTENT}.l.{number}"] = layer.digest
        if manifest.config.digest not in self.written:
            await content.write_bytes(config_data, digest=manifest.config.digest)
            self.written.add(manifest.config.digest)
        await content.write_bytes(data, digest=root.digest, labels=labels)
