"""A client of the OCI distribution API: resolve an image reference and fetch its blobs.

containerd can pull by itself, but only through its Go client: over the gRPC API a client
must fetch the blobs and write them into the content store on its own. This module does the
fetching half, with nothing containerd-specific in it, so that it can be tested against an
in-memory :class:`~kukeon.runtime.containerd.types.BlobStore`:

- image references are parsed the way Docker does (``busybox`` is
  ``docker.io/library/busybox:latest``; a first path component with a dot, a colon or
  ``localhost`` names a registry);
- a manifest list / OCI index is resolved to the manifest of the host's platform;
- every blob (index, manifest, config, layers) is checked against its digest and size while
  it streams, before the store commits it, so nothing from the network is trusted;
- blobs the store already holds are not fetched again, so an interrupted pull resumes;
- authentication follows the registry's ``WWW-Authenticate`` challenge: basic credentials, or
  a bearer token obtained from the challenge's realm (with the basic credentials if any);
- registries on loopback and those listed as insecure are spoken to over plain HTTP,
  everything else over HTTPS.

The blobs are written children first (layers and config, then the manifest carrying
``containerd.io/gc.ref.content.*`` labels, then the index) so containerd's garbage collector
never sees a parent whose children are missing. ``pull.py`` glues this to containerd.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import ipaddress
import json
import platform as platform_module
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, NamedTuple, Self

import aiohttp
from yarl import URL

from kukeon.runtime.containerd.types import BlobStore, ImageConfig, RegistryCredential

# --- media types ------------------------------------------------------------------------

MEDIA_TYPE_OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
_DOCKER_SCHEMA1: Final = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

INDEX_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST})
MANIFEST_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
ACCEPTED_MANIFEST_TYPES: Final = (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
)

# containerd's content-store label conventions (see containerd's docs/garbage-collection.md).
LABEL_UNCOMPRESSED: Final = "containerd.io/uncompressed"
LABEL_GC_REF_CONTENT: Final = "containerd.io/gc.ref.content"
LABEL_DISTRIBUTION_SOURCE: Final = "containerd.io/distribution.source"

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_ENDPOINT: Final = "registry-1.docker.io"
_DOCKER_HUB_ALIASES: Final = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)

# A manifest or image config larger than this is not an image, it is an attack or a mistake
# (containerd refuses manifests over 4 MiB for the same reason).
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_CONFIG_BYTES: Final = 16 * 1024 * 1024
_CHUNK_BYTES: Final = 256 * 1024
_TRANSIENT_ATTEMPTS: Final = 3


# --- errors -----------------------------------------------------------------------------


class InvalidReferenceError(ValueError):
    """An image reference that is not well-formed: a user mistake, named in the message."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"invalid image reference {reference!r}: {reason}")


class RegistryError(Exception):
    """Base of every failure talking to a registry; names the registry and the reference."""

    def __init__(self, *, registry: str, reference: str, message: str) -> None:
        self.registry = registry
        self.reference = reference
        self.detail = message
        super().__init__(f"registry {registry}: {reference}: {message}")

    @classmethod
    def about(cls, ref: ImageReference, message: str) -> Self:
        return cls(registry=ref.registry, reference=str(ref), message=message)


class RegistryUnauthorizedError(RegistryError):
    """The registry refused the credentials (or asked for some and none were configured)."""


class ManifestUnknownError(RegistryError):
    """The repository or the tag/digest does not exist in the registry."""


class BlobUnknownError(RegistryError):
    """A blob the manifest refers to is missing from the registry."""


class DigestMismatchError(RegistryError):
    """What the registry sent does not hash to the digest (or size) it was asked for."""

    def __init__(
        self, *, registry: str, reference: str, expected: str, actual: str, what: str
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            registry=registry,
            reference=reference,
            message=f"{what} digest mismatch: expected {expected}, got {actual}",
        )


class UnsupportedManifestError(RegistryError):
    """A manifest kind kukeon does not pull (Docker schema 1, malformed JSON, ...)."""


class NoMatchingPlatformError(RegistryError):
    """The manifest list has no entry for the host's platform."""


class RegistryUnreachableError(RegistryError):
    """The registry could not be reached, or kept answering with server errors."""


class RegistryResponseError(RegistryError):
    """The registry answered with an unexpected HTTP status."""

    def __init__(self, *, registry: str, reference: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(registry=registry, reference=reference, message=message)


# --- references -------------------------------------------------------------------------

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"(?P<algorithm>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<encoded>[a-zA-Z0-9=_-]+)")
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?P<host>{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]+))?"
)
_DIGEST_HEX_LENGTHS: Final = {"sha256": 64, "sha384": 96, "sha512": 128}
_MAX_NAME_LENGTH: Final = 255


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed, normalised image reference (``docker.io/library/busybox:latest``)."""

    registry: str
    """The registry as written in references: ``docker.io``, ``127.0.0.1:5000``, ``[::1]:5000``."""
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The repository's full name without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def object(self) -> str:
        """What the manifest endpoint is asked for: the digest when given, else the tag."""
        if self.digest is not None:
            return self.digest
        assert self.tag is not None  # parse_reference guarantees one of them
        return self.tag

    @property
    def host(self) -> str:
        """The registry's host without port or IPv6 brackets."""
        return _split_host_port(self.registry)[0]

    @property
    def endpoint(self) -> str:
        """The host[:port] to connect to (Docker Hub serves its API on another name)."""
        return DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse and normalise an image reference the way Docker and containerd do.

    A bare name lands on Docker Hub (``busybox`` → ``docker.io/library/busybox:latest``); the
    first path component names a registry when it has a ``.`` or a ``:``, is ``localhost``,
    has upper-case letters or is a bracketed IPv6 address. Without tag and digest the tag is
    ``latest``; with both, the digest is what gets pulled.
    """
    original = text
    text = text.strip()
    if not text:
        raise InvalidReferenceError(original, "empty")
    remainder, at, digest_text = text.partition("@")
    digest: str | None = None
    if at:
        digest = _check_digest(original, digest_text)
    tag: str | None = None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/") and not remainder.endswith("]"):
        tag = remainder[colon + 1 :]
        remainder = remainder[:colon]
        if not _TAG.fullmatch(tag):
            raise InvalidReferenceError(
                original, f"tag {tag!r} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
            )
    if not remainder:
        raise InvalidReferenceError(original, "missing repository name")

    first, slash, rest = remainder.partition("/")
    if slash and (
        "." in first
        or ":" in first
        or first == "localhost"
        or first.startswith("[")
        or first != first.lower()
    ):
        registry, repository = _check_domain(original, first), rest
    else:
        registry, repository = DOCKER_HUB, remainder
    if registry.lower() in _DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"

    for component in repository.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise InvalidReferenceError(
                original,
                f"repository path component {component!r} must be lowercase letters and "
                "digits separated by '.', '_', '__' or '-'",
            )
    if len(f"{registry}/{repository}") > _MAX_NAME_LENGTH:
        raise InvalidReferenceError(original, f"name longer than {_MAX_NAME_LENGTH} characters")
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)


def _check_digest(original: str, digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise InvalidReferenceError(original, f"digest {digest!r} is not <algorithm>:<hex>")
    algorithm, encoded = match.group("algorithm"), match.group("encoded")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidReferenceError(original, f"unsupported digest algorithm {algorithm!r}")
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReferenceError(
            original, f"{algorithm} digest must be {length} lowercase hex characters"
        )
    return digest


def _check_domain(original: str, domain: str) -> str:
    match = _DOMAIN.fullmatch(domain)
    if match is None:
        raise InvalidReferenceError(original, f"registry {domain!r} is not a host[:port]")
    if match.group("ipv6") is not None:
        try:
            ipaddress.IPv6Address(match.group("ipv6"))
        except ValueError:
            raise InvalidReferenceError(
                original, f"registry {domain!r} has a bad IPv6 address"
            ) from None
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise InvalidReferenceError(original, f"registry port {port} is out of range")
    return domain


def _split_host_port(registry: str) -> tuple[str, int | None]:
    if registry.startswith("["):
        host, _, after = registry[1:].partition("]")
        port = after[1:] if after.startswith(":") else ""
    else:
        host, _, port = registry.partition(":")
    return host.lower(), int(port) if port else None


def normalize_registry_host(server_address: str) -> str:
    """The registry a credential's ``serverAddress`` names, in reference form.

    Accepts what people paste: ``https://index.docker.io/v1/``, ``registry-1.docker.io``,
    ``http://127.0.0.1:5000/``, ``Registry.Example.com``.
    """
    address = server_address.strip()
    if "://" in address:
        address = address.split("://", 1)[1]
    address = address.split("/", 1)[0].lower()
    return DOCKER_HUB if address in _DOCKER_HUB_ALIASES else address


def credential_for(
    registry: str, credentials: Sequence[RegistryCredential]
) -> RegistryCredential | None:
    """The credential for ``registry``: the first whose server address names it, else the
    first without a server address (it applies to every registry of the realm's images)."""
    wanted = normalize_registry_host(registry)
    for credential in credentials:
        if (
            credential.server_address
            and normalize_registry_host(credential.server_address) == wanted
        ):
            return credential
    return next((c for c in credentials if not c.server_address.strip()), None)


def is_loopback_registry(registry: str) -> bool:
    host, _ = _split_host_port(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registry_scheme(registry: str, insecure_registries: Collection[str]) -> str:
    """``http`` for loopback registries and those listed as insecure, else ``https``.

    An insecure entry without a port covers every port of that host.
    """
    if is_loopback_registry(registry):
        return "http"
    wanted = normalize_registry_host(registry)
    wanted_host, _ = _split_host_port(wanted)
    for entry in insecure_registries:
        listed = normalize_registry_host(entry)
        if listed == wanted:
            return "http"
        listed_host, listed_port = _split_host_port(listed)
        if listed_port is None and listed_host == wanted_host:
            return "http"
    return "https"


# --- platforms --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform: what a manifest list entry is built for."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


_MACHINE_TO_PLATFORM: Final = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""),
    "loongarch64": ("loong64", ""),
}


def host_platform(machine: str | None = None) -> Platform:
    """The platform of this host (Linux, with the architecture naming Go uses)."""
    raw = (machine if machine is not None else platform_module.machine()).lower()
    architecture, variant = _MACHINE_TO_PLATFORM.get(raw, (raw, ""))
    return Platform(os="linux", architecture=architecture, variant=variant)


def _normalize_variant(architecture: str, variant: str) -> str:
    variant = variant.lower()
    if variant and variant[0].isdigit():
        variant = f"v{variant}"
    if architecture == "arm64" and variant == "":
        return "v8"
    return variant


def platform_rank(wanted: Platform, candidate: Platform) -> int | None:
    """How well ``candidate`` runs on ``wanted`` (0 best), or ``None`` when it cannot.

    An arm host runs older arm variants (v7 runs v6 and v5); an amd64 host prefers the
    baseline (no variant or ``v1``) over micro-architecture levels it may lack.
    """
    if candidate.os.lower() != wanted.os.lower():
        return None
    if candidate.architecture.lower() != wanted.architecture.lower():
        return None
    arch = wanted.architecture.lower()
    want = _normalize_variant(arch, wanted.variant)
    have = _normalize_variant(arch, candidate.variant)
    if have == want:
        return 0
    if arch == "arm":
        if have == "":
            return 50
        if want == "":
            return None
        want_level, have_level = _variant_level(want), _variant_level(have)
        if want_level is not None and have_level is not None and have_level < want_level:
            return want_level - have_level
        return None
    if arch == "amd64":
        if {have, want} <= {"", "v1"}:
            return 0
        return None
    return None


def _variant_level(variant: str) -> int | None:
    return int(variant[1:]) if re.fullmatch(r"v[0-9]+", variant) else None


# --- descriptors and results --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None


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


def parse_image_config(raw: bytes) -> tuple[ImageConfig, tuple[str, ...]]:
    """The runnable defaults and the layer diff ids of an image config blob.

    Raises ``ValueError`` on a blob that is not an image config.
    """
    document = json.loads(raw)
    if not isinstance(document, dict):
        raise ValueError("image config is not a JSON object")
    config = document.get("config") or {}
    rootfs = document.get("rootfs") or {}
    if not isinstance(config, dict) or not isinstance(rootfs, dict):
        raise ValueError("image config has a malformed `config` or `rootfs`")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ValueError("image config `rootfs.diff_ids` is not a list of digests")
    labels = config.get("Labels") or {}
    image_config = ImageConfig(
        entrypoint=tuple(_strings(config.get("Entrypoint"), "Entrypoint")),
        cmd=tuple(_strings(config.get("Cmd"), "Cmd")),
        env=tuple(_strings(config.get("Env"), "Env")),
        working_dir=str(config.get("WorkingDir") or ""),
        user=str(config.get("User") or ""),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
    )
    return image_config, tuple(diff_ids)


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"image config `config.{name}` is not a list of strings")
    return value


# --- WWW-Authenticate ---------------------------------------------------------------------


class Challenge(NamedTuple):
    """One authentication challenge: scheme (lower-case) and its parameters."""

    scheme: str
    params: Mapping[str, str]


_TOKEN_CHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(rf"({_TOKEN_CHARS})(?=[ \t]|,|$)")
_PARAM_RE = re.compile(
    rf'[ \t]*({_TOKEN_CHARS})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN_CHARS}))[ \t]*'
)
_ESCAPE_RE = re.compile(r"\\(.)")


def parse_www_authenticate(headers: Sequence[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (RFC 7235) into challenges.

    Handles several challenges in one value (``Basic realm="r", Bearer realm="t"``) and
    quoted values with commas (``scope="repository:a:pull,push"``). Parts that do not parse
    (a token68 credential, garbage) are skipped rather than failing the whole header.
    """
    challenges: list[Challenge] = []
    for header in headers:
        position, end = 0, len(header)
        while position < end:
            if header[position] in ", \t":
                position += 1
                continue
            scheme_match = _SCHEME_RE.match(header, position)
            if scheme_match is None:
                next_comma = header.find(",", position)
                position = end if next_comma == -1 else next_comma + 1
                continue
            position = scheme_match.end()
            params: dict[str, str] = {}
            while True:
                param = _PARAM_RE.match(header, position)
                if param is None:
                    break
                key, quoted, bare = param.group(1), param.group(2), param.group(3)
                params[key.lower()] = _ESCAPE_RE.sub(r"\1", quoted) if quoted is not None else bare
                position = param.end()
                if position < end and header[position] == ",":
                    position += 1
                else:
                    break
            challenges.append(Challenge(scheme_match.group(1).lower(), params))
    return challenges


# --- the client ---------------------------------------------------------------------------


@dataclass(slots=True)
class _RegistryAuth:
    """What a registry asked for last time, so later requests authenticate up front."""

    challenge: Challenge | None = None
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)


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
    ) -> None:
        self._credentials = tuple(credentials)
        self._insecure = tuple(insecure_registries)
        self.platform = platform or host_platform()
        self._session = session
        self._owns_session = session is None
        self._blob_slots = asyncio.Semaphore(max_concurrent_blobs)
        self._user_agent = user_agent
        self._auth: dict[str, _RegistryAuth] = {}

    async def __aenter__(self) -> RegistryClient:
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
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=120),
                headers={"User-Agent": self._user_agent},
            )
        return self._session

    # -- public operations

    async def resolve(self, reference: ImageReference | str) -> ResolvedImage:
        """Fetch the manifest (through the index, if any) for this host's platform."""
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        body, target = await self._fetch_manifest(ref, ref.object, expected=None)
        if target.media_type in INDEX_MEDIA_TYPES:
            position, chosen = self._choose_platform(ref, body)
            manifest_body, manifest = await self._fetch_manifest(
                ref, chosen.digest, expected=chosen
            )
            manifest = dataclasses.replace(manifest, platform=chosen.platform)
            if manifest.media_type not in MANIFEST_MEDIA_TYPES:
                raise UnsupportedManifestError.about(
                    ref,
                    f"index entry {chosen.digest} is a {manifest.media_type}, "
                    "not an image manifest",
                )
            config, layers = self._manifest_children(ref, manifest_body)
            return ResolvedImage(
                reference=ref,
                target=target,
                manifest=manifest,
                manifest_bytes=manifest_body,
                config=config,
                layers=layers,
                index_bytes=body,
                chosen_index_position=position,
            )
        config, layers = self._manifest_children(ref, body)
        return ResolvedImage(
            reference=ref,
            target=target,
            manifest=target,
            manifest_bytes=body,
            config=config,
            layers=layers,
        )

    async def pull(self, reference: ImageReference | str, *, store: BlobStore) -> PulledImage:
        """Resolve ``reference`` and put every blob it needs into ``store``.

        Blobs already in the store are not downloaded again. The returned record lists the
        descriptors the image record and the unpacker need.
        """
        resolved = await self.resolve(reference)
        ref = resolved.reference
        fetched: list[str] = []
        reused: list[str] = []
        source_labels = {f"{LABEL_DISTRIBUTION_SOURCE}.{ref.registry}": ref.repository}

        config_bytes = await self._config_bytes(ref, resolved.config, store, fetched, reused)
        try:
            image_config, diff_ids = parse_image_config(config_bytes)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnsupportedManifestError.about(
                ref, f"config blob {resolved.config.digest} is not an image config: {exc}"
            ) from None
        if len(diff_ids) != len(resolved.layers):
            raise UnsupportedManifestError.about(
                ref,
                f"manifest lists {len(resolved.layers)} layers but the config has "
                f"{len(diff_ids)} diff ids",
            )
        if not await store.has_blob(resolved.config.digest):
            await store.write_blob(
                digest=resolved.config.digest,
                size=resolved.config.size,
                chunks=_single_chunk(config_bytes),
                labels=source_labels,
            )

        try:
            async with asyncio.TaskGroup() as group:
                for layer, diff_id in zip(resolved.layers, diff_ids, strict=True):
                    labels = {LABEL_UNCOMPRESSED: diff_id, **source_labels}
                    group.create_task(self._store_blob(ref, layer, store, labels, fetched, reused))
        except BaseExceptionGroup as group_error:
            # The first failure is the story; the others are its cancelled siblings.
            raise _first_leaf(group_error) from None

        manifest_labels = {f"{LABEL_GC_REF_CONTENT}.config": resolved.config.digest}
        for position, layer in enumerate(resolved.layers):
            manifest_labels[f"{LABEL_GC_REF_CONTENT}.l.{position}"] = layer.digest
        await self._store_bytes(
            resolved.manifest, resolved.manifest_bytes, store, manifest_labels, fetched, reused
        )
        if resolved.index_bytes is not None:
            index_labels = {
                f"{LABEL_GC_REF_CONTENT}.m.{resolved.chosen_index_position}": (
                    resolved.manifest.digest
                )
            }
            await self._store_bytes(
                resolved.target, resolved.index_bytes, store, index_labels, fetched, reused
            )

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

    # -- manifests

    async def _fetch_manifest(
        self, ref: ImageReference, obj: str, *, expected: Descriptor | None
    ) -> tuple[bytes, Descriptor]:
        url = self._url(ref, f"manifests/{obj}")
        headers = {"Accept": ", ".join(ACCEPTED_MANIFEST_TYPES)}
        async with await self._request(ref, "GET", url, headers=headers) as response:
            if response.status == 404:
                raise ManifestUnknownError.about(
                    ref, f"manifest unknown{await _error_suffix(response)}"
                )
            await self._raise_for_status(ref, response, f"manifest {obj}")
            body = await _read_limited(ref, response, MAX_MANIFEST_BYTES, f"manifest {obj}")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            header_digest = response.headers.get("Docker-Content-Digest", "")

        by_digest = ":" in obj
        algorithm = obj.split(":", 1)[0] if by_digest else "sha256"
        actual = _digest_of(body, algorithm)
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
        if expected is not None and expected.size != len(body):
            raise DigestMismatchError(
                registry=ref.registry,
                reference=str(ref),
                expected=f"{expected.size} bytes",
                actual=f"{len(body)} bytes",
                what="manifest size",
            )
        media_type = self._manifest_media_type(ref, body, content_type)
        return body, Descriptor(media_type=media_type, digest=actual, size=len(body))

    def _manifest_media_type(self, ref: ImageReference, body: bytes, content_type: str) -> str:
        document = self._json(ref, body, "manifest")
        declared = document.get("mediaType")
        if content_type in _DOCKER_SCHEMA1 or document.get("schemaVersion") == 1:
            raise UnsupportedManifestError.about(
                ref,
                "Docker schema 1 manifests are not supported; push the image again "
                "with a current client",
            )
        for candidate in (declared, content_type):
            if candidate in INDEX_MEDIA_TYPES or candidate in MANIFEST_MEDIA_TYPES:
                return str(candidate)
        # OCI allows omitting mediaType; registries then often say application/json.
        if isinstance(document.get("manifests"), list):
            return MEDIA_TYPE_OCI_INDEX
        if isinstance(document.get("config"), dict):
            return MEDIA_TYPE_OCI_MANIFEST
        raise UnsupportedManifestError.about(
            ref, f"unsupported manifest media type {declared or content_type or 'unknown'!r}"
        )

    def _choose_platform(self, ref: ImageReference, body: bytes) -> tuple[int, Descriptor]:
        document = self._json(ref, body, "index")
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise UnsupportedManifestError.about(ref, "index has no `manifests`")
        best: tuple[int, int, Descriptor] | None = None
        offered: list[str] = []
        for position, entry in enumerate(entries):
            descriptor = self._descriptor(ref, entry, f"index entry {position}")
            if descriptor.platform is None:
                continue
            offered.append(str(descriptor.platform))
            rank = platform_rank(self.platform, descriptor.platform)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, position, descriptor)
        if best is None:
            raise NoMatchingPlatformError.about(
                ref,
                f"no image for platform {self.platform} "
                f"(the index offers {', '.join(offered) or 'nothing'})",
            )
        return best[1], best[2]

    def _manifest_children(
        self, ref: ImageReference, body: bytes
    ) -> tuple[Descriptor, tuple[Descriptor, ...]]:
        document = self._json(ref, body, "manifest")
        config = self._descriptor(ref, document.get("config"), "manifest config")
        raw_layers = document.get("layers")
        if not isinstance(raw_layers, list):
            raise UnsupportedManifestError.about(ref, "manifest has no `layers`")
        layers = tuple(
            self._descriptor(ref, entry, f"manifest layer {position}")
            for position, entry in enumerate(raw_layers)
        )
        return config, layers

    def _descriptor(self, ref: ImageReference, raw: Any, what: str) -> Descriptor:
        def bad(reason: str) -> UnsupportedManifestError:
            return UnsupportedManifestError.about(ref, f"{what}: {reason}")

        if not isinstance(raw, dict):
            raise bad("not a descriptor object")
        media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise bad("missing mediaType")
        if not isinstance(digest, str):
            raise bad("missing digest")
        try:
            _check_digest(digest, digest)
        except InvalidReferenceError as exc:
            raise bad(exc.reason) from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad("size must be a non-negative integer")
        annotations = raw.get("annotations") or {}
        raw_platform = raw.get("platform")
        platform: Platform | None = None
        if isinstance(raw_platform, dict):
            platform = Platform(
                os=str(raw_platform.get("os", "")),
                architecture=str(raw_platform.get("architecture", "")),
                variant=str(raw_platform.get("variant", "") or ""),
            )
        return Descriptor(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=(
                {str(k): str(v) for k, v in annotations.items()}
                if isinstance(annotations, dict)
                else {}
            ),
            platform=platform,
        )

    def _json(self, ref: ImageReference, body: bytes, what: str) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise UnsupportedManifestError.about(ref, f"{what} is not JSON") from None
        if not isinstance(document, dict):
            raise UnsupportedManifestError.about(ref, f"{what} is not a JSON object")
        return document

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
                async with await self._request(ref, "GET", url) as response:
                    if response.status == 404:
                        raise BlobUnknownError.about(
                            ref,
                            f"{what} blob {descriptor.digest} unknown"
                            f"{await _error_suffix(response)}",
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

    async def _request(
        self,
        ref: ImageReference,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        session = self._ensure_session()
        state = self._auth.setdefault(ref.registry, _RegistryAuth())
        request_headers = dict(headers or {})
        authorization = await self._authorization(ref, state, refresh=False)
        if authorization is not None:
            request_headers["Authorization"] = authorization
        response = await self._send(ref, session, method, url, request_headers)
        if response.status != 401:
            return response

        challenges = parse_www_authenticate(response.headers.getall("WWW-Authenticate", []))
        response.release()
        challenge = _preferred_challenge(challenges)
        if challenge is None:
            raise RegistryUnauthorizedError.about(
                ref,
                "unauthorized, and the registry offered no usable authentication "
                "scheme (basic or bearer)",
            )
        state.challenge = challenge
        authorization = await self._authorization(ref, state, refresh=True)
        credential = credential_for(ref.registry, self._credentials)
        if authorization is None:
            raise RegistryUnauthorizedError.about(
                ref, "authentication required and no credentials are configured for this registry"
            )
        request_headers["Authorization"] = authorization
        response = await self._send(ref, session, method, url, request_headers)
        if response.status in (401, 403):
            suffix = await _error_suffix(response)
            response.release()
            who = f"as user {credential.username!r}" if credential else "anonymously"
            raise RegistryUnauthorizedError.about(
                ref, f"unauthorized {who}: the registry refused the credentials{suffix}"
            )
        return response

    async def _send(
        self,
        ref: ImageReference,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: Mapping[str, str],
    ) -> aiohttp.ClientResponse:
        try:
            return await session.request(method, url, headers=headers)
        except aiohttp.ClientConnectorError as exc:
            raise RegistryUnreachableError.about(ref, f"cannot connect: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistryUnreachableError.about(ref, f"request failed: {exc!r}") from exc

    async def _authorization(
        self, ref: ImageReference, state: _RegistryAuth, *, refresh: bool
    ) -> str | None:
        challenge = state.challenge
        if challenge is None:
            return None
        credential = credential_for(ref.registry, self._credentials)
        if challenge.scheme == "basic":
            if credential is None:
                return None
            return basic_authorization(credential)
        scope = f"repository:{ref.repository}:pull"
        cached = state.tokens.get(scope)
        if cached is not None and not refresh and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        token, lifetime = await self._fetch_token(ref, challenge, scope, credential)
        # Renew a little early so a token never expires between two requests of one pull.
        state.tokens[scope] = (token, time.monotonic() + max(lifetime - 10, 1))
        return f"Bearer {token}"

    async def _fetch_token(
        self,
        ref: ImageReference,
        challenge: Challenge,
        scope: str,
        credential: RegistryCredential | None,
    ) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryUnauthorizedError.about(ref, "bearer challenge without a token realm")
        query = {"scope": scope}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        token_url = URL(realm).update_query(query)
        headers = {"Authorization": basic_authorization(credential)} if credential else {}
        session = self._ensure_session()
        try:
            async with session.get(token_url, headers=headers) as response:
                if response.status in (401, 403):
                    who = f"user {credential.username!r}" if credential else "anonymous access"
                    raise RegistryUnauthorizedError.about(
                        ref,
                        f"token service {token_url.host} refused {who}"
                        f"{await _error_suffix(response)}",
                    )
                if response.status != 200:
                    raise RegistryResponseError(
                        registry=ref.registry,
                        reference=str(ref),
                        status=response.status,
                        message=f"token service {token_url.host} answered HTTP {response.status}",
                    )
                raw = await _read_at_most(response, MAX_MANIFEST_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistryUnreachableError.about(
                ref, f"token service {token_url.host} unreachable: {exc!r}"
            ) from exc
        try:
            document = json.loads(raw) if raw is not None else None
        except (ValueError, UnicodeDecodeError):
            document = None
        if not isinstance(document, dict):
            document = {}
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryUnauthorizedError.about(
                ref, f"token service {token_url.host} returned no token"
            )
        expires_in = document.get("expires_in", 60)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 60.0
        return token, lifetime

    async def _raise_for_status(
        self, ref: ImageReference, response: aiohttp.ClientResponse, what: str
    ) -> None:
        if response.status == 200:
            return
        if response.status == 403:
            raise RegistryUnauthorizedError.about(
                ref, f"access to {what} denied{await _error_suffix(response)}"
            )
        raise RegistryResponseError(
            registry=ref.registry,
            reference=str(ref),
            status=response.status,
            message=f"{what}: HTTP {response.status}{await _error_suffix(response)}",
        )


def basic_authorization(credential: RegistryCredential) -> str:
    """The ``Authorization`` header value for HTTP basic auth with this credential."""
    pair = f"{credential.username}:{credential.password}".encode()
    return f"Basic {base64.b64encode(pair).decode('ascii')}"


def _preferred_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


async def _error_suffix(response: aiohttp.ClientResponse) -> str:
    """The registry's error codes and messages (``{"errors": [...]}``) as a message suffix."""
    try:
        raw = await _read_at_most(response, 64 * 1024)
        document = json.loads(raw) if raw is not None else None
    except (ValueError, aiohttp.ClientError, TimeoutError, UnicodeDecodeError):
        return ""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if isinstance(error, dict):
            code, message = error.get("code", ""), error.get("message", "")
            parts.append(f"{code}: {message}" if message else str(code))
    return f" ({'; '.join(parts)})" if parts else ""


async def _read_limited(
    ref: ImageReference, response: aiohttp.ClientResponse, limit: int, what: str
) -> bytes:
    body = await _read_at_most(response, limit)
    if body is None:
        raise UnsupportedManifestError.about(ref, f"{what} is larger than {limit} bytes")
    return body


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it exceeds ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    # read(n) may return fewer bytes than are coming: read to the end, chunk by chunk.
    async for chunk in response.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


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
    algorithm = descriptor.digest.split(":", 1)[0]
    hasher = hashlib.new(algorithm)
    received = 0

    def mismatch(actual: str) -> DigestMismatchError:
        return DigestMismatchError(
            registry=ref.registry,
            reference=str(ref),
            expected=descriptor.digest,
            actual=actual,
            what=f"{what} blob",
        )

    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        received += len(chunk)
        if received > descriptor.size:
            raise mismatch(f"more than the {descriptor.size} bytes announced")
        hasher.update(chunk)
        if received == descriptor.size:
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if actual != descriptor.digest:
                raise mismatch(actual)
        yield chunk
    if received < descriptor.size:
        raise mismatch(f"only {received} of {descriptor.size} bytes")
    if descriptor.size == 0:
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != descriptor.digest:
            raise mismatch(actual)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data
