"""Pull an image from a registry into one containerd namespace, ready to run.

The registry client (``registry.py``) fetches and verifies blobs into any BlobStore; this
module points it at containerd's content store and finishes the job the way ``ctr pull``
does: every blob is written under a lease (so the garbage collector cannot take a blob
before the image that references it exists), the image record is created or moved to the
new target, and the layers are unpacked into the snapshotter. Each step is idempotent, so a
pull interrupted anywhere is finished by pulling again: blobs already stored are not
fetched twice and layers already unpacked are not applied twice.

A registry names the sizes of the blobs it sends (the registry client refuses a byte more):
before any is fetched, those the store does not hold must fit in the free space of the
content store's disk, less the reserve that keeps the node out of DiskPressure and what
other pulls are fetching (``PullTooLargeError``). Before, with no image storage limit set
(the default), a registry describing a 1 TiB layer had kukeond write it until the disk of
containerd's content store was full.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

from kukeon.runtime.containerd.client import DEFAULT_SNAPSHOTTER, ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdError, InvalidImageError
from kukeon.runtime.containerd.images import Image, ImageService, select_platform_manifest
from kukeon.runtime.containerd.layersize import UnpackLimits
from kukeon.runtime.containerd.oci import INDEX_MEDIA_TYPES, Descriptor, Platform
from kukeon.runtime.containerd.reference import ImageReference, parse_reference
from kukeon.runtime.containerd.registry import PulledImage, RegistryClient, ResolvedImage
from kukeon.runtime.containerd.types import BlobStore, RegistryCredential


class PullTooLargeError(ContainerdError):
    """The blobs a pull would fetch take more room than the content store's disk has."""

    def __init__(self, *, image: str, need: int, room: int, why: str) -> None:
        self.image = image
        self.need = need
        self.room = room
        super().__init__(
            f"image {image!r}: the blobs to fetch take {need} bytes as the registry describes "
            f"them, more than the {room} bytes the content store has ({why})"
        )


_fetching: dict[int, int] = {}
"""Bytes pulls are fetching right now, by filesystem (``st_dev``): two pulls at once must
not each count on the same free space."""


@dataclass(frozen=True, slots=True)
class PullResult:
    """The image record a pull left in containerd, and what went into it."""

    image: Image
    pulled: PulledImage
    chain_id: str | None
    """The top snapshot's chain id when the image was unpacked."""

    @property
    def name(self) -> str:
        return self.image.name


async def pull_image(
    client: ContainerdClient,
    namespace: str,
    reference: str | ImageReference,
    *,
    credentials: Sequence[RegistryCredential] = (),
    insecure_registries: Collection[str] = (),
    unpack: bool = True,
    snapshotter: str = DEFAULT_SNAPSHOTTER,
    platform: Platform | None = None,
    registry: RegistryClient | None = None,
    before_fetch: Callable[[ResolvedImage], Awaitable[None]] | None = None,
    labels: Mapping[str, str] | None = None,
) -> PullResult:
    """Pull ``reference`` into ``namespace``; the image is named by its normalised form.

    ``busybox`` becomes the image ``docker.io/library/busybox:latest``. Registry failures
    raise :class:`~kukeon.runtime.containerd.registry.RegistryError` subclasses naming the
    registry and the reference; containerd failures raise ``ContainerdError`` subclasses.
    A ``registry`` client may be passed to share its connections and tokens across pulls.
    ``before_fetch`` is awaited with the resolved image (its manifest read, nothing
    stored): raising there refuses the pull, leaving nothing of it in containerd.
    ``labels`` go on the image record (replacing those keys of a record already there).
    """
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    images = client.images(namespace, snapshotter=snapshotter)
    root = await client.content_root()
    async with client.leases(namespace).lease() as lease:
        store = client.content(namespace, lease=lease)
        claims = contextlib.ExitStack()

        async def check(resolved: ResolvedImage) -> None:
            need = await _to_fetch(store, resolved)
            claims.enter_context(await _claim(client.unpack_limits, root, need, str(ref)))
            if before_fetch is not None:
                await before_fetch(resolved)

        with claims:  # left once fetched: on the disk then, out of its free space
            if registry is None:
                async with RegistryClient(
                    credentials=credentials,
                    insecure_registries=insecure_registries,
                    platform=platform,
                ) as own_registry:
                    pulled = await own_registry.pull(ref, store=store, before_fetch=check)
            else:
                pulled = await registry.pull(ref, store=store, before_fetch=check)
        if unpack and pulled.target.media_type in INDEX_MEDIA_TYPES:
            _check_unpacker_agrees(
                index=await store.read_blob(pulled.target.digest), pulled=pulled, images=images
            )
        target = Descriptor(
            media_type=pulled.target.media_type,
            digest=pulled.target.digest,
            size=pulled.target.size,
        )
        if unpack:  # a layer that would fill the disk: refused, the lease drops the blobs
            await images.check_unpack(target, image=pulled.name, lease=lease)
        image = await images.put(pulled.name, target=target, labels=labels, lease=lease)
    chain_id = await images.unpack(image.name) if unpack else None
    return PullResult(image=image, pulled=pulled, chain_id=chain_id)


async def _to_fetch(store: BlobStore, resolved: ResolvedImage) -> int:
    """The bytes of the blobs ``resolved`` needs that ``store`` does not hold."""
    sizes = resolved.blob_sizes()
    return sum([size for digest, size in sizes.items() if not await store.has_blob(digest)])


async def _claim(
    limits: UnpackLimits, root: str | None, need: int, image: str
) -> contextlib.AbstractContextManager[None]:
    """Hold ``need`` bytes of the content store's disk until the claim is left, refused
    past its free space less the DiskPressure reserve and other pulls' claims."""
    if root is None:
        return contextlib.nullcontext()
    try:
        found = await asyncio.to_thread(os.statvfs, root)
        device = (await asyncio.to_thread(os.stat, root)).st_dev
    except OSError:
        return contextlib.nullcontext()
    free = found.f_bavail * found.f_frsize
    reserve = limits.reserve(found.f_blocks * found.f_frsize)
    busy = _fetching.get(device, 0)
    room = max(0, free - reserve - busy)
    if need > room:
        others = f", {busy} bytes being fetched by other pulls" if busy else ""
        why = (
            f"{free} bytes free on its disk less {reserve} bytes kept free so that the node "
            f"does not come under DiskPressure{others}"
        )
        raise PullTooLargeError(image=image, need=need, room=room, why=why)
    return _holding(device, need)


@contextlib.contextmanager
def _holding(device: int, need: int) -> Iterator[None]:
    _fetching[device] = _fetching.get(device, 0) + need
    try:
        yield
    finally:
        _fetching[device] -= need
        if not _fetching[device]:
            del _fetching[device]


def _check_unpacker_agrees(*, index: bytes, pulled: PulledImage, images: ImageService) -> None:
    # The unpacker resolves the index again by itself, with the same platform matching; it
    # picks another entry only when the pull was for another platform than the host's: say
    # so now instead of failing on a missing blob later.
    chosen = select_platform_manifest(
        index, image=pulled.name, platform=images.platform, descriptor=pulled.target
    )
    if chosen.digest != pulled.manifest.digest:
        raise InvalidImageError(
            pulled.name,
            f"the index resolves to {chosen.digest} for unpacking but {pulled.manifest.digest} "
            "was pulled for this platform",
        )
