"""Pull an image from a registry into one containerd namespace, ready to run.

The registry client (``registry.py``) fetches and verifies blobs into any BlobStore; this
module points it at containerd's content store and finishes the job the way ``ctr pull``
does: every blob is written under a lease (so the garbage collector cannot take a blob
before the image that references it exists), the image record is created or moved to the
new target, and the layers are unpacked into the snapshotter. Each step is idempotent, so a
pull interrupted anywhere is finished by pulling again: blobs already stored are not
fetched twice and layers already unpacked are not applied twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from kukeon.runtime.containerd.client import DEFAULT_SNAPSHOTTER, ContainerdClient
from kukeon.runtime.containerd.errors import InvalidImageError
from kukeon.runtime.containerd.images import Image, ImageService, select_platform_manifest
from kukeon.runtime.containerd.oci import INDEX_MEDIA_TYPES, Descriptor, Platform
from kukeon.runtime.containerd.reference import ImageReference, parse_reference
from kukeon.runtime.containerd.registry import PulledImage, RegistryClient, ResolvedImage
from kukeon.runtime.containerd.types import RegistryCredential


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
    async with client.leases(namespace).lease() as lease:
        store = client.content(namespace, lease=lease)
        if registry is None:
            async with RegistryClient(
                credentials=credentials, insecure_registries=insecure_registries, platform=platform
            ) as own_registry:
                pulled = await own_registry.pull(ref, store=store, before_fetch=before_fetch)
        else:
            pulled = await registry.pull(ref, store=store, before_fetch=before_fetch)
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
