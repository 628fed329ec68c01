"""A client of the OCI distribution API: resolve an image reference and fetch its blobs.

containerd can pull by itself, but only through its Go client: over the gRPC API a client
must fetch the blobs and write them into the content store on its own. This module does the
fetching half, with nothing containerd-specific in it, so that it can be tested against an
in-memory :class:`~kukeon.runtime.containerd.types.BlobStore`. It speaks the distribution
protocol only; the rest lives beside it:

- what a reference means and which scheme a registry gets: ``reference.py``;
- the ``WWW-Authenticate`` challenge, basic credentials and bearer tokens: ``registryauth.py``;
- the documents (index, manifest, config), the platform an index resolves to, and digest
  checks: ``oci.py``, the same model the archive import uses.

What this module adds: every blob (index, manifest, config, layers) is checked against its
digest and size while it streams, before the store commits it, so nothing from the network
is trusted; blobs the store already holds are not fetched again, so an interrupted pull
resumes; broken connections and server errors are retried a few times.

The blobs are written children first (layers and config, then the manifest carrying
``containerd.io/gc.ref.content.*`` labels, then the index) so containerd's garbage collector
never sees a parent whose children are missing. ``pull.py`` glues this to containerd.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Final, TypeVar

import aiohttp
from yarl import URL

from kukeon.runtime.containerd.oci import (
    ACCEPTED_MANIFEST_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Descriptor,
    DigestVerifier,
    OciFormatError,
    Platform,
    PlatformNotFoundError,
    choose_manifest,
    detect_media_type,
    digest_of,
    host_platform,
    parse_config,
    parse_index,
    parse_manifest,
)
from kukeon.runtime.containerd.reference import (
    ImageReference,
    InvalidReferenceError,
    parse_reference,
    registry_scheme,
)
from kukeon.runtime.containerd.registryaccess import (
    NodeAddresses,
    RegistryAccess,
    RegistryRefusedError,
    read_node_addresses,
    session_options,
)
from kukeon.runtime.containerd.registryauth import Authenticator
from kukeon.runtime.containerd.registrybody import (
    ACCEPT_ENCODING,
    BodyCodingError,
    BodyTooSlowError,
    body_chunks,
)
from kukeon.runtime.containerd.registryerrors import (
    BlobUnknownError,
    DigestMismatchError,
    ManifestUnknownError,
    NoMatchingPlatformError,
    RegistryResponseError,
    RegistryUnauthorizedError,
    RegistryUnreachableError,
    UnsupportedManifestError,
    body_error,
    error_suffix,
    read_at_most,
)
from kukeon.runtime.containerd.types import BlobStore, ImageConfig, RegistryCredential

# containerd's content-store label conventions (see containerd's docs/garbage-collection.md).
LABEL_UNCOMPRESSED: Final = "containerd.io/uncompressed"
LABEL_GC_REF_CONTENT: Final = "containerd.io/gc.ref.content"
LABEL_DISTRIBUTION_SOURCE: Final = "containerd.io/distribution.source"

# A manifest or image config larger than this is not an image, it is an attack or a mistake
# (containerd refuses manifests over 4 MiB for the same reason).
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_CONFIG_BYTES: Final = 16 * 1024 * 1024
_CHUNK_BYTES: Final = 256 * 1024
_TRANSIENT_ATTEMPTS: Final = 3
_Document = TypeVar("_Document")


@dataclass(frozen=True, slots=True)
class ResolvedImage:
    """A reference resolved to the host platform's manifest (nothing stored yet)."""

    reference: ImageReference
    target: Descriptor
    """What the reference points to, an index or a manifest: the image record's target."""
    manifest: Descriptor
    manifest_bytes: bytes
    config: Descriptor
    layers: tuple[Descriptor, ...]
    index_bytes: bytes | None = None
    """The index/list's raw bytes when the reference named one."""
    chosen_index_position: int | None = None

    def blob_sizes(self) -> dict[str, int]:
        """Every blob the pull stores (the index if any, manifest, config, layers) and its
        size as the registry describes it: at most what it adds to a content store."""
        sizes = {self.target.digest: self.target.size, self.manifest.digest: self.manifest.size}
        for blob in (self.config, *self.layers):
            sizes[blob.digest] = blob.size
        return sizes


@dataclass(frozen=True, slots=True)
class PulledImage:
    """What a pull put into the blob store, for the image record and the unpacker."""

    reference: ImageReference
    name: str
    """The image record's name: ``docker.io/library/busybox:latest``."""
    target: Descriptor
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    """The uncompressed layer digests from the config's ``rootfs.diff_ids``, layer order."""
    image_config: ImageConfig
    fetched: tuple[str, ...]
    """Digests downloaded by this pull."""
    reused: tuple[str, ...]
    """Digests the store already held (an earlier, possibly interrupted, pull)."""


class RegistryClient:
    """Pull images from OCI distribution registries into a :class:`BlobStore`.

    One client can talk to many registries; credentials are matched to a registry by host.
    Use it as an async context manager (it owns an aiohttp session unless given one).
    """

    def __init__(
        self,
        *,
        credentials: Sequence[RegistryCredential] = (),
        insecure_registries: Collection[str] = (),
        platform: Platform | None = None,
        session: aiohttp.ClientSession | None = None,
        max_concurrent_blobs: int = 3,
        user_agent: str = "kukeon",
        node: NodeAddresses | None = None,
    ) -> None:
        self._insecure = tuple(insecure_registries)
        self._node = node
        """The node's addresses and cells' networks (``registryaccess``); None: read when
        the client is entered."""
        self.platform = platform or host_platform()
        self._session = session
        self._owns_session = session is None
        self._blob_slots = asyncio.Semaphore(max_concurrent_blobs)
        self._user_agent = user_agent
        self._auth = Authenticator(credentials=credentials, session=self._ensure_session)

    async def __aenter__(self) -> RegistryClient:
        if self._node is None:
            self._node = await asyncio.to_thread(read_node_addresses)
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Every request (the token service's and redirects' too) is judged by the
            # access rule: a host on the node only when listed, plain HTTP only when listed.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=120),
                # Not aiohttp's default, which offers zstd (backports.zstd is installed);
                # and aiohttp decodes none: it decodes every coding it knows, asked for or
                # not, a zstd one with a window the registry chooses (up to 128 MiB)
                # outside the node's zstd window budget. ``registrybody`` decodes.
                headers={"User-Agent": self._user_agent, "Accept-Encoding": ACCEPT_ENCODING},
                auto_decompress=False,
                **session_options(self._access),
            )
        return self._session

    # -- public operations

    @property
    def _access(self) -> RegistryAccess:
        node = self._node or NodeAddresses()
        return RegistryAccess(self._insecure, node.own, node.cells)

    async def resolve(self, reference: ImageReference | str) -> ResolvedImage:
        """Fetch the manifest (through the index, if any) for this client's platform."""
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        url = self._url(ref, "")
        why = self._access.refusal(url.scheme, url.raw_host or "", url.explicit_port)
        if why is not None:  # said with the reference (a session given is not guarded)
            raise RegistryRefusedError.about(ref, why)
        body, target = await self._fetch_manifest(ref, ref.object, expected=None)
        if target.media_type not in INDEX_MEDIA_TYPES:
            manifest = self._parse(ref, parse_manifest, body, target)
            return ResolvedImage(
                reference=ref,
                target=target,
                manifest=target,
                manifest_bytes=body,
                config=manifest.config,
                layers=manifest.layers,
            )
        index = self._parse(ref, parse_index, body, target)
        try:
            position, chosen = choose_manifest(index, self.platform)
        except PlatformNotFoundError as error:
            raise NoMatchingPlatformError.about(ref, str(error)) from None
        manifest_body, fetched = await self._fetch_manifest(ref, chosen.digest, expected=chosen)
        if fetched.media_type not in MANIFEST_MEDIA_TYPES:
            raise UnsupportedManifestError.about(
                ref, f"index entry {chosen.digest} is a {fetched.media_type}, not an image manifest"
            )
        manifest = self._parse(
            ref,
            parse_manifest,
            manifest_body,
            dataclasses.replace(fetched, platform=chosen.platform),
        )
        return ResolvedImage(
            reference=ref,
            target=target,
            manifest=manifest.descriptor,
            manifest_bytes=manifest_body,
            config=manifest.config,
            layers=manifest.layers,
            index_bytes=body,
            chosen_index_position=position,
        )

    async def pull(
        self,
        reference: ImageReference | str,
        *,
        store: BlobStore,
        before_fetch: Callable[[ResolvedImage], Awaitable[None]] | None = None,
    ) -> PulledImage:
        """Resolve ``reference`` and put every blob it needs into ``store``.

        Blobs already in the store are not downloaded again. The returned record lists the
        descriptors the image record and the unpacker need. ``before_fetch`` is awaited
        with the resolved image before any blob is fetched or stored: it may refuse the
        pull by raising.
        """
        resolved = await self.resolve(reference)
        if before_fetch is not None:
            await before_fetch(resolved)
        ref = resolved.reference
        fetched: list[str] = []
        reused: list[str] = []
        source_labels = {f"{LABEL_DISTRIBUTION_SOURCE}.{ref.registry}": ref.repository}

        config_bytes = await self._config_bytes(ref, resolved.config, store, fetched, reused)
        image_config, diff_ids = self._image_config(resolved, config_bytes)
        if not await store.has_blob(resolved.config.digest):
            await store.write_blob(
                digest=resolved.config.digest,
                size=resolved.config.size,
                chunks=_single_chunk(config_bytes),
                labels=source_labels,
            )
        try:
            async with asyncio.TaskGroup() as group:
                started: set[str] = set()
                for layer, diff_id in zip(resolved.layers, diff_ids, strict=True):
                    # One fetch per blob: a manifest may list a layer many times, and none
                    # of its fetches would find it stored yet.
                    if layer.digest in started:
                        continue
                    started.add(layer.digest)
                    labels = {LABEL_UNCOMPRESSED: diff_id, **source_labels}
                    group.create_task(self._store_blob(ref, layer, store, labels, fetched, reused))
        except BaseExceptionGroup as group_error:
            # The first failure is the story; the others are its cancelled siblings.
            raise _first_leaf(group_error) from None
        await self._store_parents(resolved, store, fetched, reused)
        return PulledImage(
            reference=ref,
            name=str(ref),
            target=resolved.target,
            manifest=resolved.manifest,
            config=resolved.config,
            layers=resolved.layers,
            diff_ids=diff_ids,
            image_config=image_config,
            fetched=tuple(fetched),
            reused=tuple(reused),
        )

    # -- documents

    @staticmethod
    def _parse(
        ref: ImageReference,
        parse: Callable[[bytes, Descriptor], _Document],
        body: bytes,
        descriptor: Descriptor,
    ) -> _Document:
        try:
            return parse(body, descriptor)
        except OciFormatError as error:
            raise UnsupportedManifestError.about(ref, str(error)) from None

    @staticmethod
    def _image_config(
        resolved: ResolvedImage, config_bytes: bytes
    ) -> tuple[ImageConfig, tuple[str, ...]]:
        ref = resolved.reference
        try:
            document = parse_config(config_bytes)
        except OciFormatError as exc:
            raise UnsupportedManifestError.about(
                ref, f"config blob {resolved.config.digest} is not an image config: {exc}"
            ) from None
        if len(document.diff_ids) != len(resolved.layers):
            raise UnsupportedManifestError.about(
                ref,
                f"manifest lists {len(resolved.layers)} layers but the config has "
                f"{len(document.diff_ids)} diff ids",
            )
        return document.run, document.diff_ids

    async def _fetch_manifest(
        self, ref: ImageReference, obj: str, *, expected: Descriptor | None
    ) -> tuple[bytes, Descriptor]:
        url = self._url(ref, f"manifests/{obj}")
        headers = {"Accept": ", ".join(ACCEPTED_MANIFEST_TYPES)}
        async with await self._auth.request(ref, "GET", url, headers=headers) as response:
            if response.status == 404:
                raise ManifestUnknownError.about(
                    ref, f"manifest unknown{await error_suffix(response)}"
                )
            await self._raise_for_status(ref, response, f"manifest {obj}")
            body = await _read_limited(ref, response, MAX_MANIFEST_BYTES, f"manifest {obj}")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = response.headers.get("Docker-Content-Digest", "")
        actual = _check_manifest_digest(ref, obj, body, header_digest)
        if expected is not None and expected.size != len(body):
            raise DigestMismatchError(
                registry=ref.registry,
                reference=str(ref),
                expected=f"{expected.size} bytes",
                actual=f"{len(body)} bytes",
                what="manifest size",
            )
        try:
            media_type = detect_media_type(body, content_type)
        except OciFormatError as error:
            raise UnsupportedManifestError.about(ref, str(error)) from None
        return body, Descriptor(media_type=media_type, digest=actual, size=len(body))

    # -- blobs

    async def _config_bytes(
        self,
        ref: ImageReference,
        config: Descriptor,
        store: BlobStore,
        fetched: list[str],
        reused: list[str],
    ) -> bytes:
        if config.size > MAX_CONFIG_BYTES:
            raise UnsupportedManifestError.about(
                ref, f"config blob of {config.size} bytes exceeds {MAX_CONFIG_BYTES}"
            )
        if await store.has_blob(config.digest):
            reused.append(config.digest)
            return await store.read_blob(config.digest)
        parts: list[bytes] = []

        async def collect(chunks: AsyncIterator[bytes]) -> None:
            parts.clear()  # a retry starts over
            async for chunk in chunks:
                parts.append(chunk)

        async with self._blob_slots:
            await self._with_retries(ref, config, collect, what="config")
        fetched.append(config.digest)
        return b"".join(parts)

    async def _store_blob(
        self,
        ref: ImageReference,
        descriptor: Descriptor,
        store: BlobStore,
        labels: Mapping[str, str],
        fetched: list[str],
        reused: list[str],
    ) -> None:
        if await store.has_blob(descriptor.digest):
            reused.append(descriptor.digest)
            return

        async def write(chunks: AsyncIterator[bytes]) -> None:
            # A store may turn a failure of the source iterator into its own error (a gRPC
            # stream just sees its request iterator die): keep the original, which says
            # what really went wrong (digest mismatch, connection broken).
            source_failure: list[BaseException] = []

            async def watched() -> AsyncIterator[bytes]:
                try:
                    async for chunk in chunks:
                        yield chunk
                except Exception as exc:
                    source_failure.append(exc)
                    raise

            try:
                await store.write_blob(
                    digest=descriptor.digest, size=descriptor.size, chunks=watched(), labels=labels
                )
            except Exception:
                if source_failure:
                    raise source_failure[0] from None
                raise

        async with self._blob_slots:
            await self._with_retries(ref, descriptor, write, what="layer")
        fetched.append(descriptor.digest)

    async def _store_parents(
        self, resolved: ResolvedImage, store: BlobStore, fetched: list[str], reused: list[str]
    ) -> None:
        """The manifest, then the index if any, each labelled with what it references."""
        manifest_labels = {f"{LABEL_GC_REF_CONTENT}.config": resolved.config.digest}
        for position, layer in enumerate(resolved.layers):
            manifest_labels[f"{LABEL_GC_REF_CONTENT}.l.{position}"] = layer.digest
        await self._store_bytes(
            resolved.manifest, resolved.manifest_bytes, store, manifest_labels, fetched, reused
        )
        if resolved.index_bytes is not None:
            entry = resolved.chosen_index_position
            index_labels = {f"{LABEL_GC_REF_CONTENT}.m.{entry}": resolved.manifest.digest}
            await self._store_bytes(
                resolved.target, resolved.index_bytes, store, index_labels, fetched, reused
            )

    async def _store_bytes(
        self,
        descriptor: Descriptor,
        body: bytes,
        store: BlobStore,
        labels: Mapping[str, str],
        fetched: list[str],
        reused: list[str],
    ) -> None:
        # Manifests are always fetched (a tag must be resolved), but stored only once.
        if await store.has_blob(descriptor.digest):
            reused.append(descriptor.digest)
            return
        await store.write_blob(
            digest=descriptor.digest,
            size=descriptor.size,
            chunks=_single_chunk(body),
            labels=labels,
        )
        fetched.append(descriptor.digest)

    async def _with_retries(
        self,
        ref: ImageReference,
        descriptor: Descriptor,
        consume: Callable[[AsyncIterator[bytes]], Awaitable[None]],
        *,
        what: str,
    ) -> None:
        """Stream one blob into ``consume``, retrying broken connections and 5xx answers."""
        url = self._url(ref, f"blobs/{descriptor.digest}")
        for attempt in range(1, _TRANSIENT_ATTEMPTS + 1):
            try:
                async with await self._auth.request(ref, "GET", url) as response:
                    if response.status == 404:
                        raise BlobUnknownError.about(
                            ref,
                            f"{what} blob {descriptor.digest} unknown"
                            f"{await error_suffix(response)}",
                        )
                    await self._raise_for_status(ref, response, f"{what} blob {descriptor.digest}")
                    await consume(_verified_chunks(ref, response, descriptor, what))
                return
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                if attempt == _TRANSIENT_ATTEMPTS:
                    raise RegistryUnreachableError.about(
                        ref,
                        f"{what} blob {descriptor.digest}: connection broke {attempt} times: {exc}",
                    ) from exc
            except RegistryResponseError as exc:
                if exc.status < 500 or attempt == _TRANSIENT_ATTEMPTS:
                    raise
            await asyncio.sleep(0.2 * 2**attempt)

    # -- HTTP and auth

    def _url(self, ref: ImageReference, path: str) -> URL:
        scheme = registry_scheme(ref.registry, self._insecure)
        return URL(f"{scheme}://{ref.endpoint}/v2/{ref.repository}/{path}", encoded=True)

    async def _raise_for_status(
        self, ref: ImageReference, response: aiohttp.ClientResponse, what: str
    ) -> None:
        if response.status == 200:
            return
        if response.status == 403:
            raise RegistryUnauthorizedError.about(
                ref, f"access to {what} denied{await error_suffix(response)}"
            )
        raise RegistryResponseError(
            registry=ref.registry,
            reference=str(ref),
            status=response.status,
            message=f"{what}: HTTP {response.status}{await error_suffix(response)}",
        )


async def _read_limited(
    ref: ImageReference, response: aiohttp.ClientResponse, limit: int, what: str
) -> bytes:
    try:
        body = await read_at_most(response, limit)
    except (BodyCodingError, BodyTooSlowError) as error:
        raise body_error(ref, what, error) from None
    if body is None:
        raise UnsupportedManifestError.about(ref, f"{what} is larger than {limit} bytes")
    return body


async def _verified_chunks(
    ref: ImageReference,
    response: aiohttp.ClientResponse,
    descriptor: Descriptor,
    what: str,
) -> AsyncIterator[bytes]:
    """Yield a blob's bytes, refusing it before its last chunk if digest or size is wrong.

    The check runs before the final chunk is handed over, so a store that stops reading at
    ``size`` bytes still never commits unverified content.
    """
    verifier = DigestVerifier(descriptor.digest, descriptor.size)

    def mismatch(actual: str) -> DigestMismatchError:
        return DigestMismatchError(
            registry=ref.registry,
            reference=str(ref),
            expected=descriptor.digest,
            actual=actual,
            what=f"{what} blob",
        )

    try:
        async for chunk in body_chunks(response, _CHUNK_BYTES):
            problem = verifier.update(chunk)
            if problem is not None:
                raise mismatch(problem)
            yield chunk
    except (BodyCodingError, BodyTooSlowError) as error:
        raise body_error(ref, f"{what} blob {descriptor.digest}", error) from None
    problem = verifier.finish()
    if problem is not None:
        raise mismatch(problem)


def _check_manifest_digest(ref: ImageReference, obj: str, body: bytes, header_digest: str) -> str:
    """The manifest's digest, refusing one that differs from the digest asked for or from
    the registry's ``Docker-Content-Digest`` header."""
    by_digest = ":" in obj
    algorithm = obj.split(":", 1)[0] if by_digest else "sha256"
    actual = digest_of(body, algorithm)
    if by_digest and obj != actual:
        raise DigestMismatchError(
            registry=ref.registry,
            reference=str(ref),
            expected=obj,
            actual=actual,
            what="manifest",
        )
    if header_digest.startswith(f"{algorithm}:") and header_digest != actual:
        raise DigestMismatchError(
            registry=ref.registry,
            reference=str(ref),
            expected=header_digest,
            actual=actual,
            what="manifest (Docker-Content-Digest)",
        )
    return actual


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


__all__ = [
    "LABEL_DISTRIBUTION_SOURCE",
    "LABEL_GC_REF_CONTENT",
    "LABEL_UNCOMPRESSED",
    "MAX_CONFIG_BYTES",
    "MAX_MANIFEST_BYTES",
    # What callers found here before the reference parsing moved to reference.py.
    "InvalidReferenceError",
    "PulledImage",
    "RegistryClient",
    "ResolvedImage",
    "parse_reference",
]
