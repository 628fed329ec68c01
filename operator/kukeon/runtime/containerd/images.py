"""Images: records naming a root blob, the import of OCI image archives, and unpacking.

An image in containerd is only a name pointing at a descriptor (an index or a manifest) in
the content store; running it needs its layers unpacked into snapshots. Over the gRPC API
that is the client's job, done here in three steps that the registry puller reuses:

1. blobs go into the content store children first (layers, config, then the manifest with
   ``containerd.io/gc.ref.content.*`` labels pointing at them, then any index), under a
   lease so the garbage collector does not take them before the image record exists
   (``imagearchive.py`` for archives, ``registry.py`` for pulls);
2. the image record is created (or updated) to point at the root descriptor;
3. :meth:`ImageService.unpack` applies each layer onto a snapshot prepared on the previous
   one (Diff.Apply), commits it under its chain id, and labels the config with
   ``containerd.io/gc.ref.snapshot.<snapshotter>`` so GC keeps the snapshots while the
   image exists. Layers already unpacked are skipped, so unpacking is idempotent.

Indexes, manifests and configs are read by :mod:`.oci`, and an index resolves to the
manifest of the service's platform (the host's) by the same matching as a pull.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kukeon.api.imageref import InvalidReferenceError, parse_reference, reference_problem
from kukeon.api.meta import quote
from kukeon.runtime.containerd._gen.services.diff.v1 import diff_pb2
from kukeon.runtime.containerd._gen.services.images.v1 import images_pb2
from kukeon.runtime.containerd._gen.types import descriptor_pb2
from kukeon.runtime.containerd.client import Subject
from kukeon.runtime.containerd.content import LABEL_GC_REF_SNAPSHOT, ContentStore
from kukeon.runtime.containerd.errors import (
    AlreadyExistsError,
    ContainerdCallError,
    ContainerdError,
    ImageNameNotReferenceError,
    ImageNotFoundError,
    InvalidImageArchiveError,
    InvalidImageError,
)
from kukeon.runtime.containerd.imagearchive import OciArchive, archive_image_name, write_tree
from kukeon.runtime.containerd.layerread import count_labels, count_layer, known_count
from kukeon.runtime.containerd.layersize import too_large, too_many, unpack_room
from kukeon.runtime.containerd.oci import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MAX_DOCUMENT_DEPTH,
    Descriptor,
    Manifest,
    OciFormatError,
    Platform,
    PlatformNotFoundError,
    choose_manifest,
    host_platform,
    parse_config,
    parse_index,
    parse_manifest,
)
from kukeon.runtime.containerd.snapshots import chain_ids
from kukeon.runtime.containerd.types import ImageConfig
from kukeon.runtime.containerd.unpackplan import UnpackPlan

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient


def descriptor_to_proto(descriptor: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=descriptor.media_type,
        digest=descriptor.digest,
        size=descriptor.size,
        annotations=dict(descriptor.annotations),
    )


def descriptor_from_proto(message: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(
        media_type=message.media_type,
        digest=message.digest,
        size=message.size,
        annotations=dict(message.annotations),
    )


@dataclass(frozen=True, slots=True)
class Image:
    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)


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
    labels: Mapping[str, str] = field(default_factory=dict)
    """The record's labels (kukeon's: who imported it, ``controllers.images``)."""

    @property
    def size(self) -> int:
        """The image's content as stored: every layer (compressed, as fetched) and the
        config, what ``docker image ls`` and ``crictl images`` call its size."""
        return self.manifest.config.size + sum(layer.size for layer in self.manifest.layers)

    @property
    def platform(self) -> str:
        parts = [self.os or "unknown", self.architecture or "unknown"]
        return "/".join([*parts, self.variant] if self.variant else parts)


def parse_image_config(data: bytes, *, image: str) -> tuple[ImageConfig, builtins.list[str]]:
    """The run defaults of an image config blob, and its layers' diff ids;
    :class:`InvalidImageError` names the image and the field when it is malformed."""
    try:
        document = parse_config(data)
    except OciFormatError as error:
        raise InvalidImageError(image, str(error)) from None
    return document.run, list(document.diff_ids)


def select_platform_manifest(
    index: bytes, *, image: str, platform: Platform | None = None, descriptor: Descriptor
) -> Descriptor:
    """The manifest of an index for ``platform`` (the host's): the same choice as a pull."""
    wanted = platform or host_platform()
    try:
        return choose_manifest(parse_index(index, descriptor), wanted)[1]
    except OciFormatError as error:
        raise InvalidImageError(image, str(error)) from None
    except PlatformNotFoundError:
        raise InvalidImageError(image, f"index has no manifest for {wanted}") from None


class ImageService:
    """Images of one containerd namespace (images are per namespace, like all content)."""

    def __init__(
        self,
        *,
        client: ContainerdClient,
        namespace: str,
        snapshotter: str,
        platform: Platform | None = None,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.snapshotter = snapshotter
        self.platform = platform or host_platform()
        """The platform an index resolves to when reading and unpacking (the host's)."""

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
        message = images_pb2.Image(
            name=name, target=descriptor_to_proto(target), labels=dict(labels or {})
        )
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
        return await self.manifest_of(await self.get(name))

    async def manifest_of(self, image: Image) -> Manifest:
        """The manifest for this host's platform of an image record already read."""
        return await self._resolve(image.target, image=image.name, content=self.content)

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
        try:
            document = parse_config(data)
        except OciFormatError as error:
            raise InvalidImageError(name, str(error)) from None
        return ImageDetails(
            name=name,
            target=image.target,
            manifest=manifest,
            config=document.run,
            created=document.created,
            os=document.platform.os,
            architecture=document.platform.architecture,
            variant=document.platform.variant,
            labels=image.labels,
        )

    async def _resolve(self, target: Descriptor, *, image: str, content: ContentStore) -> Manifest:
        descriptor = target
        for _depth in range(MAX_DOCUMENT_DEPTH):
            data = await content.read_blob(descriptor.digest)
            if descriptor.media_type in INDEX_MEDIA_TYPES:
                descriptor = select_platform_manifest(
                    data, image=image, platform=self.platform, descriptor=descriptor
                )
                continue
            if descriptor.media_type in MANIFEST_MEDIA_TYPES or not descriptor.media_type:
                try:
                    return parse_manifest(data, descriptor)
                except OciFormatError as error:
                    raise InvalidImageError(image, str(error)) from None
            raise InvalidImageError(
                image, f"unsupported media type {descriptor.media_type!r} ({descriptor.digest})"
            )
        raise InvalidImageError(image, "indexes nested too deeply")

    # --- unpacking --------------------------------------------------------------------

    async def unpack(self, name: str) -> str:
        """Make sure every layer of the image is a committed snapshot; returns the top chain id.

        Idempotent: layers whose chain id is already committed are skipped. The layers to
        apply are measured first (`check_unpack`): past the room unpacking has, nothing is
        applied (`LayerTooLargeError`, `LayerTooManyEntriesError`).
        """
        return await self._unpack(name, claimed=False)

    async def _unpack(self, name: str, *, claimed: bool) -> str:
        """``unpack``; with ``claimed``, the caller measured the layers and holds their room
        (`import_archive`, for every image of an archive at once)."""
        manifest = await self.manifest(name)
        content = self.content
        diff_ids, chains = await self._layer_ids(manifest, image=name, content=content)
        snapshots = self._client.snapshots(self.namespace, snapshotter=self.snapshotter)
        gc_label = f"{LABEL_GC_REF_SNAPSHOT}.{self.snapshotter}"
        # The common case (every container create asks): already unpacked and referenced.
        config_info = await content.info(manifest.config.digest)
        if config_info.labels.get(gc_label) == chains[-1] and await snapshots.exists(chains[-1]):
            return chains[-1]
        root = await self._client.snapshotter_root(self.snapshotter)
        async with self._client.leases(self.namespace).lease() as lease:
            if claimed:
                await self._apply_layers(manifest, diff_ids, chains, image=name, lease=lease)
            else:
                plan = await self.unpack_plan(root)
                await self._measure(manifest, chains, image=name, plan=plan, lease=lease)
                async with plan.claiming(self._client.unpack_limits, root):
                    await self._apply_layers(manifest, diff_ids, chains, image=name, lease=lease)
            await content.with_lease(lease).update_labels(
                manifest.config.digest, {gc_label: chains[-1]}
            )
        return chains[-1]

    async def _apply_layers(
        self,
        manifest: Manifest,
        diff_ids: Sequence[str],
        chains: Sequence[str],
        *,
        image: str,
        lease: str,
    ) -> None:
        snapshots = self._client.snapshots(self.namespace, snapshotter=self.snapshotter)
        parent = ""
        for layer, diff_id, chain in zip(manifest.layers, diff_ids, chains, strict=True):
            if not await snapshots.exists(chain):
                await self._apply_layer(
                    image=image,
                    layer=layer,
                    diff_id=diff_id,
                    chain=chain,
                    parent=parent,
                    lease=lease,
                )
            parent = chain

    async def unpack_plan(self, root: str | None) -> UnpackPlan:
        """An empty plan, with the room unpacking has now on ``root``'s filesystem."""
        return UnpackPlan(await asyncio.to_thread(unpack_room, self._client.unpack_limits, root))

    async def check_unpack(
        self, target: Descriptor, *, image: str, lease: str, plan: UnpackPlan | None = None
    ) -> None:
        """Refuse (`LayerTooLargeError`, `LayerUnreadableError`) an image whose blobs are
        stored (under ``lease``) but not yet named by a record, when its layers not unpacked
        yet would not fit the room unpacking has: an import or a pull then leaves nothing.
        With ``plan``, they are added to the layers of the images checked before with it
        (one archive's), and the sum must fit its room."""
        content = self._client.content(self.namespace, lease=lease)
        manifest = await self._resolve(target, image=image, content=content)
        _diff_ids, chains = await self._layer_ids(manifest, image=image, content=content)
        if plan is None:
            plan = await self.unpack_plan(await self._client.snapshotter_root(self.snapshotter))
        await self._measure(manifest, chains, image=image, plan=plan, lease=lease)

    async def _layer_ids(
        self, manifest: Manifest, *, image: str, content: ContentStore
    ) -> tuple[builtins.list[str], builtins.list[str]]:
        """The diff ids and chain ids (each a snapshot's name) of the manifest's layers,
        bottom first."""
        _config, diff_ids = parse_image_config(
            await content.read_blob(manifest.config.digest), image=image
        )
        if len(diff_ids) != len(manifest.layers):
            raise InvalidImageError(
                image,
                f"manifest has {len(manifest.layers)} layers but the config lists "
                f"{len(diff_ids)} diff ids",
            )
        if not diff_ids:
            raise InvalidImageError(image, "image has no layers")
        return diff_ids, chain_ids(diff_ids)

    async def _measure(
        self,
        manifest: Manifest,
        chains: Sequence[str],
        *,
        image: str,
        plan: UnpackPlan,
        lease: str,
    ) -> None:
        """Add to ``plan`` the layers not unpacked yet (nor in it already: a layer two images
        of an archive share unpacks once), each with what it takes once unpacked (bytes and
        inodes), refused (`LayerTooLargeError`, `LayerTooManyEntriesError`) when the plan's
        layers pass its room (`layersize.unpack_room`): a layer's count stops there. Each
        layer is counted once a namespace: its count is kept on its blob
        (`layerread.count_labels`)."""
        snapshots = self._client.snapshots(self.namespace, snapshotter=self.snapshotter)
        content = self._client.content(self.namespace, lease=lease)
        room = plan.room
        for layer, chain in zip(manifest.layers, chains, strict=True):
            if chain in plan.chains or await snapshots.exists(chain):
                continue
            count = known_count((await content.info(layer.digest)).labels)
            if count is None:
                count = await count_layer(
                    content, image=image, layer=layer, room=room, before=plan.total
                )
                await content.update_labels(layer.digest, count_labels(count))
            plan.add(image, chain, layer, count)
            if plan.total.bytes > room.bytes:
                raise too_large(image, plan.sizes, room, plan.images)
            if plan.total.entries > room.entries:
                raise too_many(image, plan.layers, plan.entries, room, plan.images)

    async def _apply_layer(
        self, *, image: str, layer: Descriptor, diff_id: str, chain: str, parent: str, lease: str
    ) -> None:
        snapshots = self._client.snapshots(self.namespace, snapshotter=self.snapshotter)
        key = f"kukeon-extract-{uuid.uuid4().hex[:12]} {chain}"
        mounts = await snapshots.prepare(key, parent=parent, lease=lease)
        try:
            request = diff_pb2.ApplyRequest(
                diff=descriptor_to_proto(layer), mounts=[mount.to_proto() for mount in mounts]
            )
            try:
                response = await self._client.call(
                    "apply layer",
                    lambda s, md: s.diff.Apply(
                        request, metadata=md, timeout=self._client.call_timeout
                    ),
                    namespace=self.namespace,
                    lease=lease,
                    subject=Subject("content", layer.digest),
                )
            except ContainerdCallError as error:
                raise _without_mount_dir(error) from error
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
        self,
        path: str | Path,
        *,
        name: str | None = None,
        unpack: bool = True,
        references_only: bool = True,
        labels: Mapping[str, str] | None = None,
        before_write: Callable[[PendingImport], Awaitable[None]] | None = None,
    ) -> builtins.list[Image]:
        """Import an OCI image archive (an oci-layout directory in a tar, maybe compressed).

        Every image named in its ``index.json`` is written to the content store, recorded
        under its name (``io.containerd.image.name``, else the ``ref.name`` annotation)
        normalised (`recorded_name`) and, with ``unpack``, unpacked for this host. ``name``
        names the image of an archive that holds exactly one. Importing the same archive
        again changes nothing. A record under the name as written (an import before names
        were normalised) is pointed at the new image too: cells find it first.

        An archive naming an image by what is not an image reference (which no cell could
        name) is refused whole, before anything is written (`ImageNameNotReferenceError`,
        every such name), unless ``references_only`` is False: the node's archive store
        may hold archives kept before that rule, which import as they did.

        Every record written gets ``labels``. ``before_write`` is awaited with what the
        import will write (`PendingImport`) before anything is written: it may refuse the
        import by raising. With ``unpack``, an archive whose images' layers, all together (a
        layer they share once), would take more room than unpacking has (`check_unpack`) is
        refused whole (`LayerTooLargeError`, `LayerTooManyEntriesError`) before any record
        is written; the lease then drops its blobs. Their room is claimed at once, before
        the records are written, until every image is unpacked.
        """
        archive = await asyncio.to_thread(OciArchive.open, Path(path))
        try:
            entries = await asyncio.to_thread(archive.index_entries)
            if name is not None and len(entries) != 1:
                raise InvalidImageArchiveError(
                    archive.path, f"holds {len(entries)} images; name= needs exactly one"
                )
            names = [
                name or archive_image_name(entry, path=archive.path, number=number)
                for number, entry in enumerate(entries)
            ]
            if references_only:
                _refuse_non_references(archive.path, names)
            if before_write is not None:
                recorded_names = [recorded_name(n) for n in names]
                await before_write(
                    PendingImport(
                        names=list(dict.fromkeys([*recorded_names, *names])),
                        blobs=await asyncio.to_thread(archive.blob_sizes),
                    )
                )
            root = await self._client.snapshotter_root(self.snapshotter)
            plan = await self.unpack_plan(root)
            async with self._client.leases(self.namespace).lease() as lease:
                content = self._client.content(self.namespace, lease=lease)
                written: set[str] = set()  # a blob the archive's images share: written once
                for entry, image_name in zip(entries, names, strict=True):
                    await write_tree(
                        archive, entry, content=content, image=image_name, written=written
                    )
                    if unpack:  # layers that would fill the disk, together: nothing kept
                        await self.check_unpack(entry, image=image_name, lease=lease, plan=plan)
                # The room of every image's layers, taken before any record is written and
                # held until all are unpacked.
                limits = self._client.unpack_limits
                async with plan.claiming(limits, root) if unpack else contextlib.nullcontext():
                    images = await self._record(entries, names, labels=labels, lease=lease)
                    if unpack:
                        for image in images:
                            await self._unpack(image.name, claimed=True)
            return images
        finally:
            await asyncio.to_thread(archive.close)

    async def _record(
        self,
        entries: Sequence[Descriptor],
        names: Sequence[str],
        *,
        labels: Mapping[str, str] | None,
        lease: str,
    ) -> builtins.list[Image]:
        """Record each of an archive's images under its name normalised (`recorded_name`),
        and point a record under the name as written at it too."""
        images: builtins.list[Image] = []
        for entry, image_name in zip(entries, names, strict=True):
            recorded = recorded_name(image_name)
            images.append(await self.put(recorded, target=entry, labels=labels, lease=lease))
            if recorded != image_name:
                await self._repoint(image_name, target=entry, labels=labels, lease=lease)
        return images

    async def _repoint(
        self, name: str, *, target: Descriptor, labels: Mapping[str, str] | None, lease: str
    ) -> None:
        """Point the record ``name`` at ``target`` if there is one (else nothing)."""
        try:
            await self.get(name)
        except ImageNotFoundError:
            return
        await self.put(name, target=target, labels=labels, lease=lease)


@dataclass(frozen=True, slots=True)
class PendingImport:
    """What an archive's import is about to write (`ImageService.import_archive`)."""

    names: builtins.list[str]
    """The image records, normalised, then as written when that differs."""
    blobs: Mapping[str, int]
    """The archive's blobs by digest, with their sizes: at most what the content store
    gets (those it already holds are not written again)."""


def recorded_name(name: str) -> str:
    """The name an archive's image is recorded under: normalised, as ``ctr images import``
    and ``docker load`` record it (``busybox:1`` is ``docker.io/library/busybox:1``, a name
    without tag gets ``:latest``), as a pull records it, so a cell naming the image either
    way finds it. A name that is no reference (an archive kept before they were refused)
    stays as written."""
    try:
        return str(parse_reference(name))
    except InvalidReferenceError:
        return name


def _refuse_non_references(path: str, names: Sequence[str]) -> None:
    """Refuse names no cell could give (the API refuses a cell's image that is not a
    reference), as ``docker load`` refuses them; blanks around one too (Docker's parser
    refuses them, and a cell naming the image without them would not find it)."""
    problems: builtins.list[tuple[str, str, str]] = []
    for number, image_name in enumerate(names):
        why = reference_problem(image_name)
        if why is None and image_name != image_name.strip():
            why = f"image name {quote(image_name)} has blanks around it"
        if why is not None:
            problems.append((f"index.json manifests[{number}]", image_name, why))
    if problems:
        raise ImageNameNotReferenceError(path, problems)


def _image(message: images_pb2.Image) -> Image:
    return Image(
        name=message.name, target=descriptor_from_proto(message.target), labels=dict(message.labels)
    )


async def unpack_image(
    client: ContainerdClient, *, namespace: str, image: str, snapshotter: str = "overlayfs"
) -> str:
    """Unpack an image whose blobs are in the content store; returns its top chain id.

    The registry puller calls this after writing the blobs and the image record.
    """
    return await client.images(namespace, snapshotter=snapshotter).unpack(image)


_MOUNT_CALLBACK = re.compile(r"mount callback failed on (/\S+): ")


def _without_mount_dir(error: ContainerdCallError) -> ContainerdCallError:
    """``error`` without the directory containerd mounted the layer's snapshot on: a
    layer's fault (a hard link to what it does not hold, a whiteout of ``.``) read
    ``link /var/lib/containerd/tmpmounts/containerd-mount1234/etc/passwd ...``, the
    node's paths in a realm user's message. Paths are said from the snapshot's root."""
    found = _MOUNT_CALLBACK.search(error.detail)
    if found is None:
        return error
    directory = found.group(1)
    detail = error.detail[: found.start()] + error.detail[found.end() :]
    detail = detail.replace(f"{directory}/", "/").replace(directory, "/")
    return ContainerdCallError(
        operation=error.operation, code=error.code, detail=f"{detail} (in the layer's snapshot)"
    )


__all__: Sequence[str] = (
    "Image",
    "ImageDetails",
    "ImageService",
    "Manifest",  # the oci model's, which callers found here before oci.py
    "descriptor_from_proto",
    "descriptor_to_proto",
    "parse_image_config",
    "recorded_name",
    "select_platform_manifest",
    "unpack_image",
)
