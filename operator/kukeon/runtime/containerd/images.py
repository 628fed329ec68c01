"""Images: records naming a root blob, the import of OCI image archives, and unpacking.

An image in containerd is only a name pointing at a descriptor (an index or a manifest) in
the content store; running it needs its layers unpacked into snapshots. Over the gRPC API
that is the client's job, done here in three steps that the registry puller reuses:

1. blobs go into the content store children first (layers, config, then the manifest with
   ``containerd.io/gc.ref.content.*`` labels pointing at them, then any index), under a
   lease so the garbage collector does not take them before the image record exists;
2. the image record is created (or updated) to point at the root descriptor;
3. :meth:`ImageService.unpack` applies each layer onto a snapshot prepared on the previous
   one (Diff.Apply), commits it under its chain id, and labels the config with
   ``containerd.io/gc.ref.snapshot.<snapshotter>`` so GC keeps the snapshots while the
   image exists. Layers already unpacked are skipped, so unpacking is idempotent.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import platform
import posixpath
import tarfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kukeon.runtime.containerd._gen.services.diff.v1 import diff_pb2
from kukeon.runtime.containerd._gen.services.images.v1 import images_pb2
from kukeon.runtime.containerd._gen.types import descriptor_pb2
from kukeon.runtime.containerd._util import is_sha256_digest
from kukeon.runtime.containerd.client import Subject
from kukeon.runtime.containerd.content import (
    LABEL_GC_REF_CONTENT,
    LABEL_GC_REF_SNAPSHOT,
    LABEL_UNCOMPRESSED,
    ContentStore,
)
from kukeon.runtime.containerd.errors import (
    AlreadyExistsError,
    ContainerdError,
    ImageNotFoundError,
    InvalidImageArchiveError,
    InvalidImageError,
)
from kukeon.runtime.containerd.snapshots import chain_ids
from kukeon.runtime.containerd.types import ImageConfig

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient

MEDIA_TYPE_OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST})
MANIFEST_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})

ANNOTATION_IMAGE_NAME: Final = "io.containerd.image.name"
ANNOTATION_REF_NAME: Final = "org.opencontainers.image.ref.name"
_CHUNK_BYTES: Final = 1024 * 1024
_MAX_JSON_BYTES: Final = 16 * 1024 * 1024

_ARCHITECTURES: Final = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_architecture() -> str:
    """The host's architecture in OCI spelling (amd64, arm64, ...)."""
    machine = platform.machine().lower()
    return _ARCHITECTURES.get(machine, machine)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> descriptor_pb2.Descriptor:
        return descriptor_pb2.Descriptor(
            media_type=self.media_type,
            digest=self.digest,
            size=self.size,
            annotations=dict(self.annotations),
        )

    @classmethod
    def from_proto(cls, message: descriptor_pb2.Descriptor) -> Descriptor:
        return cls(
            media_type=message.media_type,
            digest=message.digest,
            size=message.size,
            annotations=dict(message.annotations),
        )

    @classmethod
    def from_json(cls, data: Any, *, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: descriptor is not an object")
        digest, size = data.get("digest"), data.get("size")
        if not isinstance(digest, str) or not is_sha256_digest(digest):
            raise ValueError(f"{where}: digest {digest!r} is not sha256:<64 hex>")
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"{where}: size {size!r} is not a non-negative integer")
        annotations = data.get("annotations") or {}
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=digest,
            size=size,
            annotations={str(k): str(v) for k, v in dict(annotations).items()},
        )


@dataclass(frozen=True, slots=True)
class Image:
    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A resolved image manifest for one platform: what unpacking and running need."""

    descriptor: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageDetails:
    """What ``kukectl image ls``/``inspect`` show of an image: its record, the manifest for
    this host, and the config's creation time, platform and run defaults."""

    name: str
    target: Descriptor
    manifest: Manifest
    config: ImageConfig
    created: datetime | None
    os: str
    architecture: str
    variant: str

    @property
    def size(self) -> int:
        """The image's content as stored: every layer (compressed, as fetched) and the
        config, what ``docker image ls`` and ``crictl images`` call its size."""
        return self.manifest.config.size + sum(layer.size for layer in self.manifest.layers)

    @property
    def platform(self) -> str:
        parts = [self.os or "unknown", self.architecture or "unknown"]
        return "/".join([*parts, self.variant] if self.variant else parts)


def parse_created(value: Any) -> datetime | None:
    """An image config's ``created`` (RFC 3339, maybe with nanoseconds); None if absent or
    unreadable: it is informative, never a reason to refuse an image."""
    if not isinstance(value, str) or not value:
        return None
    try:
        created = datetime.fromisoformat(value)
    except ValueError:
        return None
    return created if created.tzinfo is not None else None


def parse_manifest(data: bytes, *, descriptor: Descriptor, image: str) -> Manifest:
    document = _json_object(data, what=f"manifest {descriptor.digest}", image=image)
    try:
        config = Descriptor.from_json(document.get("config"), where="config")
        layers = tuple(
            Descriptor.from_json(layer, where=f"layers[{index}]")
            for index, layer in enumerate(document.get("layers") or [])
        )
    except ValueError as error:
        raise InvalidImageError(image, f"manifest {descriptor.digest}: {error}") from None
    return Manifest(descriptor=descriptor, config=config, layers=layers)


def parse_image_config(data: bytes, *, image: str) -> tuple[ImageConfig, list[str]]:
    """The run defaults of an image config blob, and its layers' diff ids."""
    document = _json_object(data, what="config", image=image)
    run = document.get("config") or {}
    if not isinstance(run, dict):
        raise InvalidImageError(image, "config.config is not an object")

    def strings(key: str) -> tuple[str, ...]:
        value = run.get(key) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidImageError(image, f"config.config.{key} is not a list of strings")
        return tuple(value)

    labels = run.get("Labels") or {}
    config = ImageConfig(
        entrypoint=strings("Entrypoint"),
        cmd=strings("Cmd"),
        env=strings("Env"),
        working_dir=str(run.get("WorkingDir") or ""),
        user=str(run.get("User") or ""),
        labels={str(k): str(v) for k, v in dict(labels).items()},
    )
    rootfs = document.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(
        isinstance(item, str) and is_sha256_digest(item) for item in diff_ids
    ):
        raise InvalidImageError(image, "config.rootfs.diff_ids is not a list of sha256 digests")
    return config, list(diff_ids)


def select_platform_manifest(
    index: bytes, *, image: str, architecture: str | None = None
) -> Descriptor:
    """The manifest of an index for linux/<host architecture> (first match wins)."""
    architecture = architecture or host_architecture()
    document = _json_object(index, what="index", image=image)
    candidates: list[Descriptor] = []
    for number, entry in enumerate(document.get("manifests") or []):
        try:
            descriptor = Descriptor.from_json(entry, where=f"manifests[{number}]")
        except ValueError as error:
            raise InvalidImageError(image, f"index: {error}") from None
        wanted = entry.get("platform") if isinstance(entry, dict) else None
        if wanted is None:
            candidates.append(descriptor)
            continue
        if wanted.get("os") == "linux" and wanted.get("architecture") == architecture:
            return descriptor
    if candidates:
        return candidates[0]
    raise InvalidImageError(image, f"index has no manifest for linux/{architecture}")


def _json_object(data: bytes, *, what: str, image: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidImageError(image, f"{what} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidImageError(image, f"{what} is not a JSON object")
    return document


class ImageService:
    """Images of one containerd namespace (images are per namespace, like all content)."""

    def __init__(self, *, client: ContainerdClient, namespace: str, snapshotter: str) -> None:
        self._client = client
        self.namespace = namespace
        self.snapshotter = snapshotter

    @property
    def content(self) -> ContentStore:
        return self._client.content(self.namespace)

    # --- records ----------------------------------------------------------------------

    async def get(self, name: str) -> Image:
        """The image record; :class:`ImageNotFoundError` names the image when missing."""
        response = await self._client.call(
            "get",
            lambda s, md: s.images.Get(
                images_pb2.GetImageRequest(name=name),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("image", name),
        )
        return _image(response.image)

    async def list(self, *filters: str) -> list[Image]:
        response = await self._client.call(
            "list images",
            lambda s, md: s.images.List(
                images_pb2.ListImagesRequest(filters=list(filters)),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
        )
        return [_image(image) for image in response.images]

    async def put(
        self,
        name: str,
        *,
        target: Descriptor,
        labels: Mapping[str, str] | None = None,
        lease: str | None = None,
    ) -> Image:
        """Create the image record, or point an existing one at ``target``."""
        message = images_pb2.Image(name=name, target=target.to_proto(), labels=dict(labels or {}))
        try:
            response = await self._client.call(
                "create",
                lambda s, md: s.images.Create(
                    images_pb2.CreateImageRequest(image=message),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                lease=lease,
                subject=Subject("image", name),
            )
            return _image(response.image)
        except AlreadyExistsError:
            pass
        update = images_pb2.UpdateImageRequest(image=message)
        update.update_mask.paths.append("target")
        update.update_mask.paths.extend(f"labels.{key}" for key in labels or {})
        updated = await self._client.call(
            "update",
            lambda s, md: s.images.Update(update, metadata=md, timeout=self._client.call_timeout),
            namespace=self.namespace,
            lease=lease,
            subject=Subject("image", name),
        )
        return _image(updated.image)

    async def delete(self, name: str, *, sync: bool = False) -> bool:
        """Delete the image record (GC then frees its content); False if it was not there."""
        try:
            await self._client.call(
                "delete",
                lambda s, md: s.images.Delete(
                    images_pb2.DeleteImageRequest(name=name, sync=sync),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                subject=Subject("image", name),
            )
        except ImageNotFoundError:
            return False
        return True

    # --- reading ----------------------------------------------------------------------

    async def manifest(self, name: str) -> Manifest:
        """The image's manifest for this host's platform (resolving an index)."""
        image = await self.get(name)
        return await self._resolve(image.target, image=name, content=self.content)

    async def config(self, name: str) -> ImageConfig:
        """How the image wants to be run: entrypoint, cmd, env, working dir, user, labels."""
        manifest = await self.manifest(name)
        config, _diff_ids = parse_image_config(
            await self.content.read_blob(manifest.config.digest), image=name
        )
        return config

    async def details(self, name: str) -> ImageDetails:
        """The image's record, manifest for this host, config, creation time and platform."""
        image = await self.get(name)
        manifest = await self._resolve(image.target, image=name, content=self.content)
        data = await self.content.read_blob(manifest.config.digest)
        config, _diff_ids = parse_image_config(data, image=name)
        document = _json_object(data, what="config", image=name)
        return ImageDetails(
            name=name,
            target=image.target,
            manifest=manifest,
            config=config,
            created=parse_created(document.get("created")),
            os=str(document.get("os") or ""),
            architecture=str(document.get("architecture") or ""),
            variant=str(document.get("variant") or ""),
        )

    async def _resolve(self, target: Descriptor, *, image: str, content: ContentStore) -> Manifest:
        descriptor = target
        for _depth in range(4):
            data = await content.read_blob(descriptor.digest)
            if descriptor.media_type in INDEX_MEDIA_TYPES:
                descriptor = select_platform_manifest(data, image=image)
                continue
            if descriptor.media_type in MANIFEST_MEDIA_TYPES or not descriptor.media_type:
                return parse_manifest(data, descriptor=descriptor, image=image)
            raise InvalidImageError(
                image, f"unsupported media type {descriptor.media_type!r} ({descriptor.digest})"
            )
        raise InvalidImageError(image, "indexes nested too deeply")

    # --- unpacking --------------------------------------------------------------------

    async def unpack(self, name: str) -> str:
        """Make sure every layer of the image is a committed snapshot; returns the top chain id.

        Idempotent: layers whose chain id is already committed are skipped.
        """
        manifest = await self.manifest(name)
        content = self.content
        _config, diff_ids = parse_image_config(
            await content.read_blob(manifest.config.digest), image=name
        )
        if len(diff_ids) != len(manifest.layers):
            raise InvalidImageError(
                name,
                f"manifest has {len(manifest.layers)} layers but the config lists "
                f"{len(diff_ids)} diff ids",
            )
        if not diff_ids:
            raise InvalidImageError(name, "image has no layers")
        chains = chain_ids(diff_ids)
        snapshots = self._client.snapshots(self.namespace, snapshotter=self.snapshotter)
        gc_label = f"{LABEL_GC_REF_SNAPSHOT}.{self.snapshotter}"
        # The common case (every container create asks): already unpacked and referenced.
        config_info = await content.info(manifest.config.digest)
        if config_info.labels.get(gc_label) == chains[-1] and await snapshots.exists(chains[-1]):
            return chains[-1]
        async with self._client.leases(self.namespace).lease() as lease:
            parent = ""
            for layer, diff_id, chain in zip(manifest.layers, diff_ids, chains, strict=True):
                if not await snapshots.exists(chain):
                    await self._apply_layer(
                        image=name,
                        layer=layer,
                        diff_id=diff_id,
                        chain=chain,
                        parent=parent,
                        lease=lease,
                    )
                parent = chain
            await content.with_lease(lease).update_labels(
                manifest.config.digest, {gc_label: chains[-1]}
            )
        return chains[-1]

    async def _apply_layer(
        self, *, image: str, layer: Descriptor, diff_id: str, chain: str, parent: str, lease: str
    ) -> None:
        snapshots = self._client.snapshots(self.namespace, snapshotter=self.snapshotter)
        key = f"kukeon-extract-{uuid.uuid4().hex[:12]} {chain}"
        mounts = await snapshots.prepare(key, parent=parent, lease=lease)
        try:
            request = diff_pb2.ApplyRequest(
                diff=layer.to_proto(), mounts=[mount.to_proto() for mount in mounts]
            )
            response = await self._client.call(
                "apply layer",
                lambda s, md: s.diff.Apply(request, metadata=md, timeout=self._client.call_timeout),
                namespace=self.namespace,
                lease=lease,
                subject=Subject("content", layer.digest),
            )
            if response.applied.digest != diff_id:
                raise InvalidImageError(
                    image,
                    f"layer {layer.digest} unpacks to {response.applied.digest}, "
                    f"but the config says {diff_id}",
                )
            try:
                await snapshots.commit(name=chain, key=key, lease=lease)
            except AlreadyExistsError:
                # Another unpack of an image sharing this layer got there first.
                await snapshots.remove(key)
        except BaseException:
            with contextlib.suppress(ContainerdError):
                await asyncio.shield(snapshots.remove(key))
            raise

    # --- importing --------------------------------------------------------------------

    async def import_archive(
        self, path: str | Path, *, name: str | None = None, unpack: bool = True
    ) -> builtins.list[Image]:
        """Import an OCI image archive (an oci-layout directory in a tar, maybe compressed).

        Every image named in its ``index.json`` is written to the content store, recorded
        under its name (``io.containerd.image.name``, else the ``ref.name`` annotation) and,
        with ``unpack``, unpacked for this host. ``name`` names the image of an archive
        that holds exactly one. Importing the same archive again changes nothing.
        """
        archive = await asyncio.to_thread(_OciArchive.open, Path(path))
        try:
            entries = archive.index_entries()
            if name is not None and len(entries) != 1:
                raise InvalidImageArchiveError(
                    archive.path, f"holds {len(entries)} images; name= needs exactly one"
                )
            images: builtins.list[Image] = []
            async with self._client.leases(self.namespace).lease() as lease:
                content = self._client.content(self.namespace, lease=lease)
                for number, entry in enumerate(entries):
                    image_name = name or _image_name(entry, path=archive.path, number=number)
                    await _write_tree(archive, entry, content=content, image=image_name)
                    images.append(await self.put(image_name, target=entry, lease=lease))
            if unpack:
                for image in images:
                    await self.unpack(image.name)
            return images
        finally:
            await asyncio.to_thread(archive.close)


def _image(message: images_pb2.Image) -> Image:
    return Image(
        name=message.name, target=Descriptor.from_proto(message.target), labels=dict(message.labels)
    )


def _image_name(entry: Descriptor, *, path: str, number: int) -> str:
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


async def _write_tree(
    archive: _OciArchive, root: Descriptor, *, content: ContentStore, image: str
) -> None:
    """Write ``root`` and everything it references, children before parents."""
    data = await asyncio.to_thread(archive.read_small, root)
    if root.media_type in INDEX_MEDIA_TYPES:
        document = _json_object(data, what=f"index {root.digest}", image=image)
        labels: dict[str, str] = {}
        for number, entry in enumerate(document.get("manifests") or []):
            try:
                child = Descriptor.from_json(entry, where=f"manifests[{number}]")
            except ValueError as error:
                raise InvalidImageArchiveError(archive.path, f"{root.digest}: {error}") from None
            if not archive.has_blob(child.digest):
                continue  # other platforms are often left out of an archive
            await _write_tree(archive, child, content=content, image=image)
            labels[f"{LABEL_GC_REF_CONTENT}.m.{number}"] = child.digest
        await content.write_bytes(data, digest=root.digest, labels=labels)
        return
    if root.media_type not in MANIFEST_MEDIA_TYPES:
        raise InvalidImageArchiveError(
            archive.path, f"{root.digest}: unsupported media type {root.media_type!r}"
        )
    manifest = parse_manifest(data, descriptor=root, image=image)
    config_data = await asyncio.to_thread(archive.read_small, manifest.config)
    _config, diff_ids = parse_image_config(config_data, image=image)
    if len(diff_ids) != len(manifest.layers):
        raise InvalidImageArchiveError(
            archive.path, f"{image}: {len(manifest.layers)} layers but {len(diff_ids)} diff ids"
        )
    labels = {f"{LABEL_GC_REF_CONTENT}.config": manifest.config.digest}
    for number, (layer, diff_id) in enumerate(zip(manifest.layers, diff_ids, strict=True)):
        await content.write_blob(
            digest=layer.digest,
            size=layer.size,
            chunks=archive.stream(layer),
            labels={LABEL_UNCOMPRESSED: diff_id},
        )
        labels[f"{LABEL_GC_REF_CONTENT}.l.{number}"] = layer.digest
    await content.write_bytes(config_data, digest=manifest.config.digest)
    await content.write_bytes(data, digest=root.digest, labels=labels)


class _OciArchive:
    """Random access to the blobs of an oci-layout tar (blocking: call via to_thread)."""

    def __init__(self, path: Path, tar: tarfile.TarFile) -> None:
        self.path = str(path)
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in tar.getmembers():
            if member.isfile():
                self._members[posixpath.normpath(member.name.lstrip("/"))] = member

    @classmethod
    def open(cls, path: Path) -> _OciArchive:
        if not path.is_file():
            raise InvalidImageArchiveError(str(path), "no such file")
        try:
            tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by close()
        except tarfile.TarError:
            # tarfile's own message lists every compression it tried, one per line.
            raise InvalidImageArchiveError(
                str(path), "not a tar archive (plain, gzip, bzip2 or xz)"
            ) from None
        except OSError as error:
            raise InvalidImageArchiveError(
                str(path), f"cannot be read: {error.strerror or type(error).__name__}"
            ) from None
        return cls(path, tar)

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
        layout = self._members.get("oci-layout")
        if layout is None:
            raise InvalidImageArchiveError(
                self.path, "no oci-layout file: not an OCI image layout archive"
            )
        try:
            document = json.loads(self._read_member("index.json", limit=_MAX_JSON_BYTES))
        except (ValueError, UnicodeDecodeError):
            raise InvalidImageArchiveError(self.path, "index.json is not valid JSON") from None
        entries = document.get("manifests") if isinstance(document, dict) else None
        if not isinstance(entries, list) or not entries:
            raise InvalidImageArchiveError(self.path, "index.json lists no manifests")
        try:
            return [
                Descriptor.from_json(entry, where=f"index.json manifests[{number}]")
                for number, entry in enumerate(entries)
            ]
        except ValueError as error:
            raise InvalidImageArchiveError(self.path, str(error)) from None

    @staticmethod
    def _blob_name(digest: str) -> str:
        algorithm, _, encoded = digest.partition(":")
        return f"blobs/{algorithm}/{encoded}"

    def has_blob(self, digest: str) -> bool:
        return self._blob_name(digest) in self._members

    def read_small(self, descriptor: Descriptor) -> bytes:
        data = self._read_member(self._blob_name(descriptor.digest), limit=_MAX_JSON_BYTES)
        if len(data) != descriptor.size:
            raise InvalidImageArchiveError(
                self.path,
                f"{descriptor.digest} is {len(data)} bytes, its descriptor says {descriptor.size}",
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


async def unpack_image(
    client: ContainerdClient, *, namespace: str, image: str, snapshotter: str = "overlayfs"
) -> str:
    """Unpack an image whose blobs are in the content store; returns its top chain id.

    The registry puller calls this after writing the blobs and the image record.
    """
    return await client.images(namespace, snapshotter=snapshotter).unpack(image)


__all__: Sequence[str] = (
    "Descriptor",
    "Image",
    "ImageDetails",
    "ImageService",
    "Manifest",
    "host_architecture",
    "parse_created",
    "parse_image_config",
    "parse_manifest",
    "select_platform_manifest",
    "unpack_image",
)
