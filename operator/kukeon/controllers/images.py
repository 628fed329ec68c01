"""Making a container's image available in its realm's containerd namespace.

containerd keeps images per namespace, and kukeon has one namespace per realm, so the
same image may be needed in several. The cell controller asks for an image by the name the
user wrote; `ImageProvider` answers from, in order: the namespace itself, the node's archive
store (OCI archives given to `kukectl image import`, imported into any realm on demand, so
hosts without a registry work), and finally the registry, with the realm's credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn

from kukeon.api import Realm
from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerNotFoundError, ImageNotFoundError
from kukeon.runtime.containerd.imagefs import image_has_file
from kukeon.runtime.containerd.images import (
    Image,
    PendingImport,
    parse_image_config,
)
from kukeon.runtime.containerd.namespaces import is_own
from kukeon.runtime.containerd.pull import PullResult, pull_image
from kukeon.runtime.containerd.reference import ImageReference
from kukeon.runtime.containerd.registry import (
    InvalidReferenceError,
    ResolvedImage,
    parse_reference,
)
from kukeon.runtime.containerd.types import ImageConfig, RegistryCredential
from kukeon.runtime.containerd.userdb import ImageLayer, read_image_user_database

from .imagearchives import ImageArchives, name_candidates
from .imagepulls import BackgroundPulls, ImagePullingError, PullNotJoinedError, pull_reference
from .imageroom import NO_IMAGE_STORAGE_LIMITS as NO_IMAGE_STORAGE_LIMITS
from .imageroom import ImageRoom
from .imageroom import ImageStorageExceededError as ImageStorageExceededError
from .imageroom import ImageStorageLimits as ImageStorageLimits

IMPORTED_BY_LABEL = "kukeon.io/imported-by"
"""The image record's label saying where it came from: `ADMIN_IMPORT`, `EDITOR_IMPORT` or
`PULLED`. Records written before the label have none (`owned_by_admin`)."""
ADMIN_IMPORT = "admin"
"""An admin's `kukectl image import`, or an import from the node's archive store (which
holds only admins' archives): a realm editor may not remove or replace it."""
EDITOR_IMPORT = "editor"
"""A realm editor's import."""
PULLED = "registry"
"""A pull (`kukectl image pull`, or the node's for a cell): the realm's editors remove it."""


def owned_by_admin(labels: Mapping[str, str]) -> bool:
    """Whether a realm editor must leave the record be (not remove, prune or replace it):
    an admin's import, and a record that does not say where it came from, since an import
    before records said so may have been an admin's (an admin removes it)."""
    return labels.get(IMPORTED_BY_LABEL) not in {EDITOR_IMPORT, PULLED}


def admin_owner_reason(labels: Mapping[str, str]) -> str:
    """Why `owned_by_admin` holds for a record with these labels, as a message says it."""
    if labels.get(IMPORTED_BY_LABEL) == ADMIN_IMPORT:
        return f"was imported by an admin ({IMPORTED_BY_LABEL}={ADMIN_IMPORT})"
    return (
        f"does not say who imported it (no {IMPORTED_BY_LABEL} label of an editor's import "
        "or a pull: imported before kukeon recorded it), so it is taken for an admin's"
    )


class AdminImageError(Exception):
    """A realm editor's import or pull would replace images that are an admin's (`owned`:
    each name, and why, `admin_owner_reason`)."""

    def __init__(self, owned: Mapping[str, str]) -> None:
        told = "; ".join(f"image {name!r} of this realm {why}" for name, why in owned.items())
        super().__init__(
            f"{told}: a realm editor may not replace it (import or pull under another "
            "name, or ask an admin)"
        )
        self.names = list(owned)


def realm_image_quota(realm: Realm) -> int | None:
    """The realm's own image storage limit (None: unset, kukeond's default applies)."""
    return realm.spec.quota.image_storage_bytes if realm.spec.quota is not None else None


class ImageUnavailableError(Exception):
    """The image could not be found or pulled; the message names the image and why."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"image {image!r}: {reason}")
        self.image = image


class InvalidImageReferenceError(ImageUnavailableError):
    """The image name is not a reference any registry could serve: only a new spec helps."""


class ReadyImage(NamedTuple):
    """An image present in a namespace, with what building a container's spec needs of it."""

    name: str
    config: ImageConfig
    passwd: str | None
    """The image's /etc/passwd (None when it has none): resolves `user` names, gid, HOME."""
    group: str | None
    pulled: bool = False
    """Brought by a pull the cell's earlier pass started or joined (`BackgroundPulls`)."""


RUN_FACTS_CACHE_SIZE = 256


def _reference_of(image: str) -> ImageReference:
    """The reference a pull of `image` asks for (`InvalidImageReferenceError`: none)."""
    try:
        return parse_reference(image)
    except InvalidReferenceError as error:
        raise InvalidImageReferenceError(image, f"not a valid image reference: {error}") from error


class ImageProvider:
    def __init__(
        self,
        *,
        containerd: ContainerdClient,
        archives: ImageArchives,
        insecure_registries: Sequence[str] = (),
        storage: ImageStorageLimits = NO_IMAGE_STORAGE_LIMITS,
        instance: str = "",
    ) -> None:
        self.containerd = containerd
        self.archives = archives
        self.instance = instance
        """This control plane's tag (`DaemonConfig.instance`): the namespaces whose images
        keep an archive of `archives` are its own (`is_own`)."""
        self.insecure_registries = tuple(insecure_registries)
        self.storage = storage
        self._room = ImageRoom(containerd)
        """The limits' accounting: each import or pull checks and claims its blobs there
        once they are known, so those under way at once never overrun a limit together,
        and none waits for another's fetching."""
        self._run_facts_cache: dict[str, tuple[ImageConfig, str | None, str | None]] = {}
        self._file_cache: dict[tuple[str, str], bool | None] = {}
        self.pulls = BackgroundPulls()
        """The cells' pulls, run beside their passes."""
        self.on_arrival: Callable[[Sequence[str]], object] | None = None
        """Told the names of each image an import or a pull recorded (set by
        ``Controllers``: the cells waiting for one of them are woken, ``imagewaits``)."""

    def _arrived(self, names: Sequence[str]) -> None:
        if self.on_arrival is not None and names:
            self.on_arrival(names)

    async def import_archive(
        self,
        *,
        namespace: str,
        path: Path,
        share: bool = True,
        realm_limit: int | None = None,
    ) -> list[str]:
        """Import an archive into `namespace` and, when `share`, keep it for the other realms.

        The node's archive store answers every realm's cells before a registry does, so an
        archive kept there decides what another realm runs under that name: only an admin's
        import is shared; a realm editor's stays in its realm's namespace. Each record says
        which it was (`IMPORTED_BY_LABEL`); an editor's import that would repoint a record
        that is an admin's (`owned_by_admin`) is refused whole (`AdminImageError`), before
        anything is written.

        ``realm_limit`` is the realm's `spec.quota.imageStorageBytes` (None: unset, so
        `storage.realm`; 0: none): an import whose blobs the namespace does not hold yet
        would take the namespace, or the node (`storage.node`), past its limit is refused
        whole (`ImageStorageExceededError`), before anything is written."""
        service = self.containerd.images(namespace)
        limits = self.limits_of(realm_limit)
        async with self._room.claiming(namespace, limits) as claim:

            async def check(pending: PendingImport) -> None:
                if not share:
                    await self._refuse_admins(namespace, pending.names)
                if limits != NO_IMAGE_STORAGE_LIMITS:
                    await claim(pending.blobs)

            if not share:
                label = {IMPORTED_BY_LABEL: EDITOR_IMPORT}
                images = await service.import_archive(path, labels=label, before_write=check)
                names = [image.name for image in images]
            else:
                names = await self._import_shared(namespace, path, check)
        self._arrived(names)
        return names

    async def _refuse_admins(self, namespace: str, names: Sequence[str]) -> None:
        """Refuse a realm editor's writing of these image names (`AdminImageError`) when
        the namespace records one of them as an admin's (`owned_by_admin`)."""
        owned = {
            name: admin_owner_reason(found.labels)
            for name in names
            if (found := await self._record(namespace, name)) is not None
            and owned_by_admin(found.labels)
        }
        if owned:
            raise AdminImageError(owned)

    async def _import_shared(
        self, namespace: str, path: Path, check: Callable[[PendingImport], Awaitable[None]]
    ) -> list[str]:
        service = self.containerd.images(namespace)
        stored = await self.archives.store(path)
        try:
            images = await service.import_archive(
                stored, labels={IMPORTED_BY_LABEL: ADMIN_IMPORT}, before_write=check
            )
        except BaseException:
            # Not an image after all (or containerd refused it): keep nothing of it.
            await asyncio.shield(self.archives.discard(stored))
            raise
        names = [image.name for image in images]
        await self.archives.record(stored, names)
        return names

    def limits_of(self, realm_limit: int | None) -> ImageStorageLimits:
        """The limits of a realm whose `spec.quota.imageStorageBytes` is `realm_limit`."""
        realm = self.storage.realm if realm_limit is None else (realm_limit or None)
        return ImageStorageLimits(realm=realm, node=self.storage.node)

    async def room_left(self, namespace: str, realm_limit: int | None) -> None:
        """Refuse a pull (`ImageStorageExceededError`) once the namespace or the node holds
        its limit's worth of image content."""
        await self._room.check(namespace, None, self.limits_of(realm_limit))

    async def release_archives(
        self, names: Sequence[str], realm_namespaces: Collection[str] = ()
    ) -> list[str]:
        """After `kukectl image rm`/`prune`: forget the archives kept for these names (the
        disk they take) when no namespace of this control plane holds an image of that name
        any more, under any of its spellings (`name_candidates`), so no realm of this node
        has it. Another control plane's namespaces on the same containerd (another
        instance: its own state directory and archive store) keep nothing here; those of
        `realm_namespaces` (its realms') count whatever their labels (an import before
        imports labelled them made one without). Returns the names forgotten."""
        kept = await self.archives.names()
        candidates = [name for name in names if name in kept]
        if not candidates:
            return []
        namespaces = [
            namespace.name
            for namespace in await self.containerd.namespaces.list()
            if is_own(namespace.labels, self.instance) or namespace.name in realm_namespaces
        ]
        unheld = [name for name in candidates if not await self._held_anywhere(namespaces, name)]
        await self.archives.forget(unheld)
        return unheld

    async def _held_anywhere(self, namespaces: Sequence[str], name: str) -> bool:
        for namespace in namespaces:
            if await self._present(namespace, name) is not None:
                return True
        return False

    async def created_from(self, *, namespace: str, container: str) -> ReadyImage | None:
        """The image an existing container was created from, when its record is still in
        `namespace` (None when there is no such container or record).

        What a running container keeps when its cell names an image the parser now refuses
        (stored before the API refused it): the node recorded that image under the name it
        normalised it to then, which the container names, so an upgrade stops no workload.
        """
        try:
            found = await self.containerd.containers(namespace).get(container)
        except ContainerNotFoundError:
            return None
        record = await self._present(namespace, found.image) if found.image else None
        if record is None:
            return None
        config, passwd, group = await self._run_facts(namespace, record)
        return ReadyImage(name=record.name, config=config, passwd=passwd, group=group)

    async def _record(self, namespace: str, name: str) -> Image | None:
        """The record of exactly `name` (no other spelling), None when there is none."""
        try:
            return await self.containerd.images(namespace).get(name)
        except ImageNotFoundError:
            return None

    async def _present(self, namespace: str, image: str) -> Image | None:
        images = self.containerd.images(namespace)
        for name in name_candidates(image):
            try:
                return await images.get(name)
            except ImageNotFoundError:
                continue
        return None

    async def pull(
        self,
        *,
        namespace: str,
        image: str,
        credentials: Sequence[RegistryCredential],
        realm_limit: int | None = None,
        editor: bool = False,
    ) -> str:
        """Pull `image` from its registry into `namespace` (again, if it is there: a tag may
        have moved), as `kukectl image pull` asks; returns the name it is recorded under.
        ``realm_limit`` as `import_archive`'s: a pull past a limit is refused
        (`ImageStorageExceededError`) before any layer is fetched. A realm `editor`'s pull
        of a name whose record is an admin's is refused (`AdminImageError`), as its import
        would be, before anything is fetched."""
        reference = _reference_of(image)
        if editor:
            await self._refuse_admins(namespace, [str(reference)])
        try:
            result = await self._pull(namespace, reference, credentials, realm_limit)
        except ImageStorageExceededError:
            raise
        except Exception as error:  # every registry or containerd failure, named
            raise ImageUnavailableError(image, f"pulling failed: {error}") from error
        self._arrived([result.name])
        return result.name

    async def _pull(
        self,
        namespace: str,
        reference: ImageReference,
        credentials: Sequence[RegistryCredential],
        realm_limit: int | None,
    ) -> PullResult:
        """`pull_image` into `namespace`, refused once its manifest is read when the blobs
        it would add, those the namespace (or the node) does not hold, take it past a limit
        (`ImageRoom`): nothing of the image is fetched or stored then. Without a limit
        nothing is checked; with one, the blobs are claimed while they are fetched, so the
        pulls and imports under way at once fit together (`ImageRoom.claiming`)."""
        limits = self.limits_of(realm_limit)
        limited = limits != NO_IMAGE_STORAGE_LIMITS
        async with self._room.claiming(namespace, limits, pull=True) as claim:

            async def check(resolved: ResolvedImage) -> None:
                await claim(resolved.blob_sizes())

            return await pull_image(
                self.containerd,
                namespace,
                reference,
                credentials=credentials,
                insecure_registries=self.insecure_registries,
                before_fetch=check if limited else None,
                labels={IMPORTED_BY_LABEL: PULLED},
            )

    async def _import_kept(self, namespace: str, image: str, realm_limit: int | None) -> None:
        """Import the node's archive store's copy of `image`, if any, into `namespace`, as
        an import is bounded (`ImageStorageExceededError`)."""
        archive = await self.archives.find(image)
        if archive is None:
            return
        limits = self.limits_of(realm_limit)
        limited = limits != NO_IMAGE_STORAGE_LIMITS
        async with self._room.claiming(namespace, limits) as claim:

            async def check(pending: PendingImport) -> None:
                await claim(pending.blobs)

            # Kept before import refused names that are no reference: as it was. The
            # store holds admins' imports only: the record is theirs.
            await self.containerd.images(namespace).import_archive(
                archive,
                references_only=False,
                labels={IMPORTED_BY_LABEL: ADMIN_IMPORT},
                before_write=check if limited else None,
            )

    async def ensure(
        self,
        *,
        namespace: str,
        image: str,
        credentials: Sequence[RegistryCredential],
        on_pull: Callable[[str], Awaitable[None]] | None = None,
        realm_limit: int | None = None,
        waiter: tuple[str, ...] | None = None,
    ) -> ReadyImage:
        """The image's name in `namespace`, its config and user database, importing or
        pulling it if needed; `on_pull(image)` is awaited before a pull starts (the cell
        says it is pulling: a large image takes a while). ``realm_limit`` as
        `import_archive`'s: an import or pull past a limit is an `ImageUnavailableError`
        naming the limit, with nothing of the image left in the namespace.

        A cell's pass (its key as `waiter`) does not wait for a pull: it is started (or
        joined) beside the pass (`BackgroundPulls`), which ends (`ImagePullingError`); the
        cell's next pass takes its image (`ReadyImage.pulled`) or its failure."""
        record = await self._present(namespace, image)
        if record is None:
            record = await self._import_for(namespace, image, realm_limit)
        pulled = False
        if record is None:
            reference = _reference_of(image)
            if waiter is not None:
                asked = (image, reference, credentials, realm_limit)
                await self._pull_beside((namespace, str(reference)), waiter, on_pull, asked)
            if on_pull is not None:
                await on_pull(image)
            name = await self._pull_for_cell(namespace, image, reference, credentials, realm_limit)
            record = await self.containerd.images(namespace).get(name)
        elif waiter is not None:
            pulled = self._pulled_for(namespace, image, waiter)
        config, passwd, group = await self._run_facts(namespace, record)
        return ReadyImage(
            name=record.name, config=config, passwd=passwd, group=group, pulled=pulled
        )

    async def _import_for(
        self, namespace: str, image: str, realm_limit: int | None
    ) -> Image | None:
        """The node's archive store's copy imported for a cell (None: it has none)."""
        try:
            await self._import_kept(namespace, image, realm_limit)
        except ImageStorageExceededError as error:
            raise ImageUnavailableError(
                image, f"in the node's archive store, not imported into the realm: {error}"
            ) from error
        record = await self._present(namespace, image)
        if record is not None:
            self._arrived([record.name])
        return record

    def _pulled_for(self, namespace: str, image: str, waiter: tuple[str, ...]) -> bool:
        """Whether the image there was brought by a pull `waiter` waited for."""
        reference = pull_reference(image)
        return reference is not None and self.pulls.pulled((namespace, reference), waiter)

    async def _pull_beside(
        self,
        key: tuple[str, str],
        waiter: tuple[str, ...],
        on_pull: Callable[[str], Awaitable[None]] | None,
        asked: tuple[str, ImageReference, Sequence[RegistryCredential], int | None],
    ) -> NoReturn:
        """`_pull_for_cell` run beside the pass: its failure raised (a pull it waited for),
        else `ImagePullingError` once the pull is started or joined and said (`on_pull`),
        or `PullNotJoinedError`, unsaid, for a pass that joins none (a stale version's)."""
        namespace, image = key[0], asked[0]

        async def pull() -> None:
            await self._pull_for_cell(namespace, *asked)

        outcome = self.pulls.ask(key, waiter, pull)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is False:
            raise PullNotJoinedError(image, namespace)
        if on_pull is not None:
            await on_pull(image)
        raise ImagePullingError(image, namespace)

    async def _pull_for_cell(
        self,
        namespace: str,
        image: str,
        reference: ImageReference,
        credentials: Sequence[RegistryCredential],
        realm_limit: int | None,
    ) -> str:
        """A cell's pull: its failure is the cell's reason (`ImageUnavailableError`)."""
        try:
            result = await self._pull(namespace, reference, credentials, realm_limit)
        except ImageStorageExceededError as error:
            raise ImageUnavailableError(
                image, f"not in realm namespace {namespace}, not pulled: {error}"
            ) from error
        except Exception as error:  # every pull failure becomes the cell's reason
            raise ImageUnavailableError(
                image,
                f"not in realm namespace {namespace}, not imported, and pulling failed: {error}",
            ) from error
        self._arrived([result.name])
        return result.name

    async def _run_facts(
        self, namespace: str, record: Image
    ) -> tuple[ImageConfig, str | None, str | None]:
        """The image config and user database, read once per image target digest: it is
        content-addressed (it names this platform's manifest, hence the config and layers),
        so the same in every namespace. Every reconcile pass needs them; a hit costs no
        manifest or config read, and reading /etc/passwd means reading layers."""
        key = record.target.digest
        cached = self._run_facts_cache.get(key)
        if cached is not None:
            return cached
        name = record.name
        manifest = await self.containerd.images(namespace).manifest_of(record)
        content = self.containerd.content(namespace)
        config, _diff_ids = parse_image_config(
            await content.read_blob(manifest.config.digest), image=name
        )
        layers = [ImageLayer(layer.media_type, layer.digest) for layer in manifest.layers]
        try:
            passwd, group = await read_image_user_database(content, layers)
        except ValueError:
            passwd, group = None, None  # an unreadable layer format: numeric users still work
        if len(self._run_facts_cache) >= RUN_FACTS_CACHE_SIZE:
            self._run_facts_cache.pop(next(iter(self._run_facts_cache)))
        found = (config, passwd, group)
        self._run_facts_cache[key] = found
        return found

    async def has_file(self, *, namespace: str, image: str, path: str) -> bool | None:
        """Whether the image (a name present in `namespace`, as `ensure` returns it) has a
        regular file at `path`, symlinks followed; `None` when its layers cannot be read.

        Read from the layers once per config digest and path: only containers that need a
        program the image may lack (the tty wrapper's /bin/sh) ask.
        """
        manifest = await self.containerd.images(namespace).manifest(image)
        key = (manifest.config.digest, path)
        if key in self._file_cache:
            return self._file_cache[key]
        layers = [ImageLayer(layer.media_type, layer.digest) for layer in manifest.layers]
        found: bool | None
        try:
            found = await image_has_file(self.containerd.content(namespace), layers, path)
        except ValueError:  # layerread.LayerReadError: corrupt, cut short, too many entries
            found = None  # an unreadable layer: let the runtime tell
        if len(self._file_cache) >= RUN_FACTS_CACHE_SIZE:
            self._file_cache.pop(next(iter(self._file_cache)))
        self._file_cache[key] = found
        return found
