"""The realm image routes: a realm's images in this node's containerd (``kukectl image``).

Images live per node (each kukeond has its own containerd) and per realm (one containerd
namespace each). Like the other node routes these are added by the daemon onto the API's
aiohttp application, behind the same authentication; ``?node=NAME`` sends any of them to
another node's kukeond (``forwarding``).

```
GET    .../realms/{realm}/images                     list               viewer and up
GET    .../realms/{realm}/images/{image}             inspect            viewer and up
POST   .../realms/{realm}/images                     import (body: OCI image archive)
POST   .../realms/{realm}/images/pull?image=REF      pull, with the realm's registry credentials
DELETE .../realms/{realm}/images/{image}[?force=true] remove the image's record
POST   .../realms/{realm}/images/prune               remove every image no cell of the realm names
```

Writing routes need an editor of the realm (or admin). An image record says where it came
from (``importedBy``: ``admin`` or ``editor`` for an import, ``registry`` for a pull, from
the record's ``kukeon.io/imported-by`` label; none for a record written before the label):
what an admin imported into a realm (or the node's archive store imported for it) is the
admin's, as a registry's repository is its owner's, and so is a record without the label
(it may be an admin's import): a realm editor may not remove it (``403`` naming it), prune
skips it for an editor (``kept``), and an editor's import or pull may not replace it
(``403``).
Only an admin's removal or prune frees the node's archive store. ``{image}`` is the name
as given to a cell (``busybox``, ``docker.io/library/busybox:latest``): what it normalises
to is tried too. Removing deletes the image's record under each of those names it has (an import
before names were normalised recorded ``busybox:1``, a pull or a later import
``docker.io/library/busybox:1``), with a synchronous garbage collection, so
containerd frees its content and snapshots (what no other image or container still uses)
before the answer; the archive an import kept in the node's archive store goes once no
namespace holds an image of its name and no cell of any realm names it. An image a cell of
the realm names is not removed (``409`` naming the cells) unless ``force=true``: the cell's
controller then fetches it again (from the node's archive store or the registry) when it
next needs it.

Every answer about an image carries ``name``, ``digest`` (of the record's target),
``size`` (the config and every layer as stored, i.e. compressed), ``created`` (the
config's, RFC 3339, or null) and ``platform``; inspect adds the manifest's digest, the
layers and the config's run defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tarfile
import tempfile
import zlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from kukeon.api import Cell, Kind, Realm
from kukeon.apiserver.app import long_running
from kukeon.apiserver.auth import Role, Verb, denial
from kukeon.apiserver.expect import body_chunks
from kukeon.apiserver.handlers import principal_of, route_patterns
from kukeon.apiserver.quotausage import IMAGE_USAGE_KEY, ImageUsage
from kukeon.apiserver.request import refuse_body
from kukeon.apiserver.status import ApiError, Cause
from kukeon.controllers import Controllers
from kukeon.controllers.cellfiles import SecretUnavailableError
from kukeon.controllers.imagearchives import name_candidates
from kukeon.controllers.images import (
    IMPORTED_BY_LABEL,
    AdminImageError,
    ImageStorageExceededError,
    ImageUnavailableError,
    InvalidImageReferenceError,
    admin_owner_reason,
    owned_by_admin,
    realm_image_quota,
)
from kukeon.controllers.pullcredentials import registry_credentials
from kukeon.controllers.realm import realm_namespace_labels
from kukeon.daemon.lookups import realm_of
from kukeon.runtime.containerd.archivesize import (
    IMAGE_IMPORT_MAX_BYTES,
    ArchiveMeter,
    ArchiveTooLargeError,
)
from kukeon.runtime.containerd.errors import (
    ContainerdError,
    ContainerdUnavailableError,
    ImageNameNotReferenceError,
    ImageNotFoundError,
    InvalidImageArchiveError,
    InvalidImageError,
    NotFoundError,
)
from kukeon.runtime.containerd.images import Image, ImageDetails, ImageService
from kukeon.runtime.hostfiles import make_dirs
from kukeon.store import Registry

log = logging.getLogger(__name__)

MAX_CELLS_NAMED = 10
"""A refusal names at most this many cells (and says how many more)."""
IMPORT_IDLE_SECONDS = 60.0
"""How long an import's body may send nothing before the import is answered 408: a body
that stopped held its long-running place, its staging file and its connection for ever."""


async def _next_within(chunks: AsyncIterator[bytes], seconds: float) -> bytes | None:
    """The body's next chunk, None at its end; ApiError 408 when none came in ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await anext(chunks, None)
    except TimeoutError:
        raise ApiError(
            408,
            f"the image archive's body sent nothing for {seconds:g}s; nothing of it was "
            "kept: send it again",
            reason="Timeout",
        ) from None


def _authorize(request: web.Request, *, verb: Verb, realm: str) -> None:
    why = denial(principal_of(request), verb=verb, realm=realm, subresource="images")
    if why is not None:
        raise ApiError(403, f"Forbidden: {why}")


def _flag(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false").lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"", "0", "false", "no"}:
        return False
    raise ApiError(400, f"{name}: {text[:40]!r} is not true or false")


def image_summary(details: ImageDetails) -> dict[str, Any]:
    """What ``image ls`` shows of an image."""
    return {
        "name": details.name,
        "digest": details.target.digest,
        "mediaType": details.target.media_type,
        "size": details.size,
        "created": details.created.isoformat().replace("+00:00", "Z")
        if details.created is not None
        else None,
        "platform": details.platform,
        "importedBy": details.labels.get(IMPORTED_BY_LABEL),
    }


def image_document(details: ImageDetails) -> dict[str, Any]:
    """What ``image inspect`` shows: the summary, the manifest, its layers and run defaults."""
    config = details.config
    return {
        **image_summary(details),
        "manifest": {
            "digest": details.manifest.descriptor.digest,
            "mediaType": details.manifest.descriptor.media_type,
            "size": details.manifest.descriptor.size,
        },
        "configDigest": details.manifest.config.digest,
        "layers": [
            {"digest": layer.digest, "mediaType": layer.media_type, "size": layer.size}
            for layer in details.manifest.layers
        ],
        "config": {
            "entrypoint": list(config.entrypoint),
            "cmd": list(config.cmd),
            "env": list(config.env),
            "workingDir": config.working_dir,
            "user": config.user,
            "labels": dict(config.labels),
        },
    }


def cells_naming(cells: Iterable[Cell], image: str) -> list[str]:
    """The ``space/stack/cell`` of every cell with a container whose image is ``image``
    (by the name it is recorded under: as written or normalised)."""
    users: list[str] = []
    for cell in cells:
        if any(image in name_candidates(c.image) for c in cell.spec.containers if c.image):
            users.append(f"{cell.spec.space_id}/{cell.spec.stack_id}/{cell.metadata.name}")
    return sorted(users)


def named_images(cells: Iterable[Cell]) -> set[str]:
    """Every name an image of these cells may be recorded under."""
    return {
        name
        for cell in cells
        for c in cell.spec.containers
        if c.image
        for name in name_candidates(c.image)
    }


def _named(cells: list[str]) -> str:
    shown = ", ".join(cells[:MAX_CELLS_NAMED])
    more = len(cells) - MAX_CELLS_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


class ImageRoutes:
    def __init__(
        self,
        *,
        controllers: Controllers,
        registry: Registry,
        max_archive_bytes: int = IMAGE_IMPORT_MAX_BYTES,
    ) -> None:
        self.controllers = controllers
        self.registry = registry
        self.max_archive_bytes = max_archive_bytes
        """An imported archive's bound, as sent and decompressed (``imageImportMaxBytes``)."""

    def add_routes(self, app: web.Application) -> None:
        _, realm_path = route_patterns(Kind.REALM)
        images = f"{realm_path}/images"
        app.router.add_get(images, self.list_images)
        app.router.add_post(images, self.import_image)
        app.router.add_post(f"{images}/pull", self.pull_image)
        app.router.add_post(f"{images}/prune", self.prune_images)
        app.router.add_get(f"{images}/{{image:.+}}", self.inspect_image)
        app.router.add_delete(f"{images}/{{image:.+}}", self.remove_image)
        app[IMAGE_USAGE_KEY] = self.realm_image_usage  # `images` of the realm's quota answer

    async def realm_image_usage(self, realm: Realm) -> ImageUsage:
        """The realm's image storage on this node now and its limit here (what an import or
        a pull is checked against), read from containerd when asked: one content listing."""
        host = self.controllers.host
        hard = self.controllers.images.limits_of(realm_image_quota(realm)).realm
        content = host.containerd.content(host.namespace_of(realm))
        node = host.settings.node_name
        try:
            used = sum((await content.sizes()).values())  # the blobs as stored
        except ContainerdError as exc:
            log.warning("image storage of realm %s not read: %s", realm.metadata.name, exc)
            return ImageUsage(node=node, used=None, hard=hard, problem=f"containerd: {exc}")
        return ImageUsage(node=node, used=used, hard=hard)

    # --- helpers --------------------------------------------------------------------------

    async def _namespace(self, realm: str) -> str:
        return self.controllers.host.namespace_of(await realm_of(self.registry, realm))

    async def _ensure_namespace(self, namespace: str, realm: str) -> None:
        """The realm's namespace, made here when the realm's controller has not made it on
        this node yet (no cell of the realm ran here), labelled as that controller labels
        it: this control plane's (the archive store counts only its own namespaces' images,
        `ImageProvider.release_archives`), and this node's, so the orphan collector purges
        it, images and all, once the realm is deleted."""
        host = self.controllers.host
        await host.containerd.namespaces.ensure(
            namespace, labels=realm_namespace_labels(host, realm)
        )

    def _images(self, namespace: str) -> ImageService:
        return self.controllers.host.containerd.images(namespace)

    async def _records(self, realm: str, namespace: str, image: str) -> list[Image]:
        """The names ``image`` is recorded under in the namespace, in the order a cell
        looks for them (`name_candidates`): an import before names were normalised
        recorded ``busybox:1`` where a pull or a later import records
        ``docker.io/library/busybox:1``, and both may be there (404 when none is)."""
        service = self._images(namespace)
        records: list[Image] = []
        for name in name_candidates(image):
            try:
                records.append(await service.get(name))
            except ImageNotFoundError:
                continue
            except ContainerdError as error:
                raise _unavailable(realm, error) from error
        if not records:
            raise ApiError(
                404, f"image {image[:200]!r} not found in realm {realm}", name=image, kind="Image"
            )
        return records

    async def _realm_cells(self, realm: str) -> list[Cell]:
        listed = await self.registry.list(Kind.CELL, (realm,))
        return [cell for cell in listed.items if isinstance(cell, Cell)]

    async def _details(self, realm: str, namespace: str, name: str) -> ImageDetails | None:
        """The image's details; None when its manifest or config cannot be read here (an
        image for another platform, a half-deleted one, a blob containerd refuses): it is
        listed without them."""
        try:
            return await self._images(namespace).details(name)
        except ContainerdUnavailableError as error:
            raise _unavailable(realm, error) from error
        except ContainerdError:
            return None

    async def _release_archives(self, removed: list[str]) -> list[str]:
        """Free the node's archive store of the removed images that no realm's namespace
        holds and no cell (of any realm: one may be waiting to import it) names."""
        if not removed:
            return []
        wanted = named_images(
            cell for cell in (await self.registry.list(Kind.CELL)).items if isinstance(cell, Cell)
        )
        # The archive store may keep an image under a spelling this namespace did not
        # record it under (an old import's ``busybox:1`` beside ``docker.io/library/...``).
        spellings = dict.fromkeys(other for name in removed for other in name_candidates(name))
        unnamed = [name for name in spellings if name not in wanted]
        realms = (await self.registry.list(Kind.REALM)).items
        own = {self.controllers.host.namespace_of(r) for r in realms if isinstance(r, Realm)}
        try:
            return await self.controllers.images.release_archives(unnamed, own)
        except (ContainerdError, OSError) as error:
            # The images are removed; their archives stay until the next removal.
            log.warning("keeping the archives of %s: %s", ", ".join(unnamed), error)
            return []

    # --- reading --------------------------------------------------------------------------

    async def list_images(self, request: web.Request) -> web.StreamResponse:
        realm = request.match_info["realm"]
        _authorize(request, verb="list", realm=realm)
        namespace = await self._namespace(realm)
        try:
            images = await self._images(namespace).list()
        except ContainerdError as error:
            raise _unavailable(realm, error) from error
        items: list[dict[str, Any]] = []
        for image in sorted(images, key=lambda i: i.name):
            details = await self._details(realm, namespace, image.name)
            if details is not None:
                items.append(image_summary(details))
            else:
                items.append(
                    {
                        "name": image.name,
                        "digest": image.target.digest,
                        "mediaType": image.target.media_type,
                        "size": None,
                        "created": None,
                        "platform": None,
                        "importedBy": image.labels.get(IMPORTED_BY_LABEL),
                    }
                )
        return web.json_response({"realm": realm, "namespace": namespace, "items": items})

    async def inspect_image(self, request: web.Request) -> web.StreamResponse:
        realm = request.match_info["realm"]
        _authorize(request, verb="get", realm=realm)
        namespace = await self._namespace(realm)
        name = (await self._records(realm, namespace, request.match_info["image"]))[0].name
        try:
            details = await self._images(namespace).details(name)
        except ImageNotFoundError:
            raise ApiError(404, f"image {name!r} not found in realm {realm}") from None
        except (InvalidImageError, NotFoundError) as error:
            raise ApiError(
                422, f"image {name!r} in realm {realm} cannot be read here: {error}"
            ) from error
        except ContainerdError as error:
            raise _unavailable(realm, error) from error
        return web.json_response({"realm": realm, **image_document(details)})

    # --- writing --------------------------------------------------------------------------

    @long_running
    async def import_image(self, request: web.Request) -> web.StreamResponse:
        realm = request.match_info["realm"]
        _authorize(request, verb="create", realm=realm)
        limit = self.max_archive_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(ArchiveTooLargeError(limit, decompressed=False))
        found = await realm_of(self.registry, realm)
        namespace = self.controllers.host.namespace_of(found)
        staging = self.controllers.images.archives.incoming
        await asyncio.to_thread(make_dirs, staging)
        handle, temporary = await asyncio.to_thread(tempfile.mkstemp, suffix=".tar", dir=staging)
        path = Path(temporary)
        try:
            try:
                await self._stage(request, handle, limit)
            except OSError as error:
                # A write (or the close's flush) the disk refused names no file: the 507
                # says which; the finally below removes what was staged.
                if error.filename is None:
                    error.filename = str(path)
                raise
            try:
                await self._ensure_namespace(namespace, realm)
                # Shared with the node's other realms only when an admin imports: the
                # archive store answers them before a registry (controllers/images.py).
                share = principal_of(request).role == Role.ADMIN
                names = await self.controllers.images.import_archive(
                    namespace=namespace,
                    path=path,
                    share=share,
                    realm_limit=realm_image_quota(found),
                )
            except ImageStorageExceededError as error:
                raise _no_room(realm, error) from None
            except AdminImageError as error:
                raise _admins(error) from None
            except ImageNameNotReferenceError as error:
                raise _not_references(error) from None
            except InvalidImageArchiveError as error:
                raise _not_an_archive(error.reason) from None
            except InvalidImageError as error:
                raise _not_an_archive(f"image {error.name!r}: {error.reason}") from None
            except (tarfile.TarError, EOFError, zlib.error, ValueError) as error:
                # A tar that ends early or a compressed stream that breaks mid-way.
                raise _not_an_archive(f"cannot be read ({type(error).__name__})") from None
            except ContainerdUnavailableError as error:
                raise _unavailable(realm, error) from error
            except ContainerdError as error:
                if _containerd_disk_full(error):
                    raise _containerd_full(realm, "importing the image archive", error) from error
                raise ApiError(422, f"importing the image archive: {error}") from error
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(path.unlink)
        return web.json_response(
            {"realm": realm, "namespace": namespace, "images": names}, status=201
        )

    @staticmethod
    async def _stage(request: web.Request, handle: int, limit: int) -> None:
        """The request's body into the staging file open at ``handle``, which it closes."""
        stream = await asyncio.to_thread(os.fdopen, handle, "wb")
        # Measured as it comes: a small gzip bomb is refused before a byte of it is
        # imported (its blobs went whole into the content store).
        meter = ArchiveMeter(limit)
        chunks = body_chunks(request, 1 << 20)
        try:
            while (chunk := await _next_within(chunks, IMPORT_IDLE_SECONDS)) is not None:
                await asyncio.to_thread(_measured_write, stream, meter, chunk)
        except ArchiveTooLargeError as error:
            raise _too_large(error) from None
        finally:
            await asyncio.to_thread(stream.close)

    @long_running
    async def pull_image(self, request: web.Request) -> web.StreamResponse:
        realm_name = request.match_info["realm"]
        _authorize(request, verb="create", realm=realm_name)
        refuse_body(request, "?image=REF&node=NAME")
        image = request.query.get("image", "")
        if not image:
            raise ApiError(400, "image: the image to pull is required (?image=REF)")
        found = await realm_of(self.registry, realm_name)
        namespace = self.controllers.host.namespace_of(found)
        try:
            credentials = await registry_credentials(self.registry, found)
        except SecretUnavailableError as error:
            raise ApiError(422, f"realm {realm_name} registry credentials: {error}") from error
        try:
            await self._ensure_namespace(namespace, realm_name)
            await self.controllers.images.room_left(namespace, realm_image_quota(found))
            name = await self.controllers.images.pull(
                namespace=namespace,
                image=image,
                credentials=credentials,
                realm_limit=realm_image_quota(found),
                editor=principal_of(request).role != Role.ADMIN,
            )
        except ImageStorageExceededError as error:
            raise _no_room(realm_name, error) from None
        except AdminImageError as error:
            raise _admins(error) from None
        except InvalidImageReferenceError as error:
            raise ApiError(
                400, str(error), causes=[Cause("image", "not a valid image reference")]
            ) from error
        except ImageUnavailableError as error:
            if isinstance(error.__cause__, ContainerdUnavailableError):
                raise _unavailable(realm_name, error.__cause__) from error
            if _containerd_disk_full(error):
                raise _containerd_full(realm_name, f"pulling {image}", error) from error
            raise ApiError(422, str(error), reason="ErrImagePull") from error
        except ContainerdError as error:
            if _containerd_disk_full(error):
                raise _containerd_full(realm_name, f"pulling {image}", error) from error
            raise _unavailable(realm_name, error) from error
        details = await self._details(realm_name, namespace, name)
        answer: dict[str, Any] = {"realm": realm_name, "namespace": namespace, "name": name}
        if details is not None:
            answer.update(image_summary(details))
        return web.json_response(answer, status=201)

    async def remove_image(self, request: web.Request) -> web.StreamResponse:
        realm = request.match_info["realm"]
        _authorize(request, verb="delete", realm=realm)
        force = _flag(request, "force")
        admin = principal_of(request).role == Role.ADMIN
        namespace = await self._namespace(realm)
        # Every spelling goes: one left behind is what a cell naming the image finds.
        records = await self._records(realm, namespace, request.match_info["image"])
        names = [record.name for record in records]
        owned = [record for record in records if owned_by_admin(record.labels)]
        if owned and not admin:
            raise ApiError(
                403,
                f"Forbidden: image {owned[0].name!r} of realm {realm} "
                f"{admin_owner_reason(owned[0].labels)}: only an admin removes it (its "
                "archive, if the node keeps one, serves the node's realms)",
                name=owned[0].name,
                kind="Image",
            )
        cells = await self._realm_cells(realm)
        users = sorted({user for name in names for user in cells_naming(cells, name)})
        if users and not force:
            raise ApiError(
                409,
                f"image {names[0]!r} is used by {len(users)} cell(s) of realm {realm}: "
                f"{_named(users)}; delete them first, or remove it anyway (force=true, "
                "kukectl image rm --force)",
                name=names[0],
                kind="Image",
            )
        removed: list[str] = []
        try:
            for number, name in enumerate(names, start=1):
                # The last removal's synchronous collection frees what they all held.
                if await self._images(namespace).delete(name, sync=number == len(names)):
                    removed.append(name)
        except ContainerdError as error:
            raise _unavailable(realm, error) from error
        if not removed:
            raise ApiError(404, f"image {names[0]!r} not found in realm {realm}")
        # The archive store holds admins' imports: only an admin's removal frees it.
        released = await self._release_archives(removed) if admin else []
        return web.json_response(
            {"realm": realm, "removed": removed, "usedBy": users, "archivesReleased": released}
        )

    async def prune_images(self, request: web.Request) -> web.StreamResponse:
        realm = request.match_info["realm"]
        _authorize(request, verb="delete", realm=realm)
        refuse_body(request, "?node=NAME")
        admin = principal_of(request).role == Role.ADMIN
        namespace = await self._namespace(realm)
        cells = await self._realm_cells(realm)
        service = self._images(namespace)
        try:
            images = await service.list()
        except ContainerdError as error:
            raise _unavailable(realm, error) from error
        unnamed = [image for image in images if not cells_naming(cells, image.name)]
        # An editor's prune leaves what an admin imported (only an admin removes it).
        kept = sorted(i.name for i in unnamed if not admin and owned_by_admin(i.labels))
        unused = sorted(i.name for i in unnamed if i.name not in kept)
        removed: list[str] = []
        try:
            for number, name in enumerate(unused, start=1):
                # One synchronous collection, with the last removal, frees what every
                # removed image held.
                if await service.delete(name, sync=number == len(unused)):
                    removed.append(name)
        except ContainerdError as error:
            raise _unavailable(realm, error) from error
        released = await self._release_archives(removed) if admin else []
        return web.json_response(
            {"realm": realm, "removed": removed, "kept": kept, "archivesReleased": released}
        )


def _admins(error: AdminImageError) -> ApiError:
    """403: a realm editor's import or pull would replace an admin's image."""
    return ApiError(403, f"Forbidden: {error}", name=error.names[0], kind="Image")


def _not_an_archive(why: str) -> ApiError:
    first = why.strip().splitlines()[0] if why.strip() else "unreadable"
    return ApiError(422, f"the upload is not a valid OCI image archive: {first}")


def _not_references(error: ImageNameNotReferenceError) -> ApiError:
    """422: the archive names images by what no cell could name (the API refuses such an
    image). The whole archive is refused, as containerd refuses a Docker archive whose tag
    is no reference, so nothing unusable is left behind."""
    names = ", ".join(repr(name[:100]) for _, name, _ in error.problems[:MAX_CELLS_NAMED])
    return ApiError(
        422,
        f"the image archive names {len(error.problems)} image(s) by what is not an image "
        f"reference, which no cell could name: {names}; nothing was imported (name each "
        "image as a cell would, e.g. registry.example/app:1)",
        causes=[Cause(where, why) for where, _, why in error.problems],
    )


def _measured_write(stream: BinaryIO, meter: ArchiveMeter, chunk: bytes) -> None:
    meter.feed(chunk)
    stream.write(chunk)


def _too_large(error: ArchiveTooLargeError) -> ApiError:
    how = "once decompressed " if error.decompressed else ""
    return ApiError(
        413,
        f"the image archive is larger than the limit of {error.limit} bytes {how}(kukeond's "
        "imageImportMaxBytes, --image-import-max-bytes); nothing of it was imported",
        causes=[Cause("body", f"over {error.limit} bytes {how}".strip())],
    )


def _no_room(realm: str, error: ImageStorageExceededError) -> ApiError:
    """403, as a realm quota's refusal (Kubernetes' exceeded quota is a 403)."""
    return ApiError(
        403,
        f"Forbidden: realm {realm}: {error}",
        causes=[Cause("imageStorageBytes", f"limit {error.limit} bytes")],
    )


def _unavailable(realm: str, error: ContainerdError) -> ApiError:
    return ApiError(503, f"the images of realm {realm}: {error}")


def _containerd_disk_full(error: Exception) -> bool:
    """containerd refused a write for space (its root's file system full or over quota):
    gRPC carries only its words (a write of the content store's ingest, of a snapshot)."""
    words = str(error).lower()
    return "no space left on device" in words or "disk quota exceeded" in words


def _containerd_full(realm: str, what: str, error: Exception) -> ApiError:
    """507, not the 422 of an archive at fault or the 503 of a containerd away."""
    return ApiError(
        507,
        f"{what} into realm {realm}: containerd's disk is full ({error}): free room under "
        "containerd's root on the node and retry",
        reason="HostDiskFull",
    )
