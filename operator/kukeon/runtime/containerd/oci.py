"""The OCI image model: media types, descriptors, platforms, indexes, manifests, configs.

Archive import (``imagearchive.py``), the unpacker (``images.py``) and registry pulls
(``registry.py``) all read these JSON documents here, with the same validation and the
same choice of platform:

- a document that is not a JSON object, a descriptor without media type, digest or a
  non-negative size, a digest that is not ``<algorithm>:<hex>`` of the right length are
  refused with :class:`OciFormatError`, whose message names the field
  (``layers[1]: size must be a non-negative integer``);
- an index resolves to the manifest of the wanted platform the way containerd's
  ``platforms.Only`` does: platforms are normalised (``aarch64`` is ``arm64``, ``arm64/v8``
  is ``arm64``, ``arm`` without variant is ``arm/v7``, ``amd64/v1`` is ``amd64``), and a host
  also runs the older variants of its family, best first: ``arm/v7`` runs ``v6`` then
  ``v5``; ``arm64`` runs 32-bit ``arm`` (``v8`` down to ``v5``); ``amd64/v3`` runs ``v2``,
  then ``amd64``, then ``386``. Among equally good entries the first wins; an entry without
  a platform is taken only when no entry matches;
- :func:`content_mismatch` and :class:`DigestVerifier` check bytes against a descriptor,
  whole or streamed, so nothing read from an archive or the network is trusted.

The models are frozen dataclasses, like every other record of ``runtime.containerd``: they
hold what was parsed (they are converted to and from containerd's protobuf messages), and
the validation is written out so each error names the document's field in words. Nothing
here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import platform as platform_module
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from kukeon.api.imageref import digest_problem
from kukeon.runtime.containerd.types import ImageConfig

# --- media types ------------------------------------------------------------------------

MEDIA_TYPE_OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_SCHEMA1_MEDIA_TYPES: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

INDEX_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST})
MANIFEST_MEDIA_TYPES: Final = frozenset({MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST})
MAX_LAYERS: Final = 500
"""The layers overlayfs stacks under a container at most (the kernel's OVL_MAX_STACK): an
image of more could never run, and each was unpacked first (~8.5 ms a layer: a manifest of
16 MiB lists 100,000)."""
MAX_DOCUMENT_DEPTH: Final = 4
"""How many documents an image's root leads through to its manifest: indexes nest at most
three deep (an index of platforms in an index of images is two)."""
ACCEPTED_MANIFEST_TYPES: Final = (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
)


class OciFormatError(ValueError):
    """A document that is not the OCI (or Docker v2) JSON it should be; names the field."""


class PlatformNotFoundError(LookupError):
    """An index has no manifest the wanted platform can run."""

    def __init__(self, wanted: Platform, offered: Sequence[Platform]) -> None:
        self.wanted = wanted
        self.offered = tuple(offered)
        listed = ", ".join(str(p) for p in offered) or "nothing"
        super().__init__(f"no image for platform {wanted} (the index offers {listed})")


# --- digests ----------------------------------------------------------------------------
# A digest's grammar (``digest_problem``) is the image references' (``kukeon.api.imageref``):
# the API server checks a reference's digest exactly as the node checks a descriptor's.


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """The digest of ``data`` with ``algorithm`` (``sha256:<hex>``)."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def content_mismatch(data: bytes, descriptor: Descriptor) -> str | None:
    """What ``data`` is instead of what ``descriptor`` says (size, then digest), or None."""
    if len(data) != descriptor.size:
        return f"{len(data)} bytes, not {descriptor.size}"
    actual = digest_of(data, descriptor.digest.partition(":")[0])
    return None if actual == descriptor.digest else actual


class DigestVerifier:
    """Checks a blob streamed in chunks against the digest and size it should have.

    :meth:`update` reports a mismatch as soon as it is known, at the latest on the chunk
    that completes the announced size, so a caller can refuse that chunk before handing
    it on; :meth:`finish` reports a blob that ended short.
    """

    def __init__(self, digest: str, size: int) -> None:
        self.digest = digest
        self.size = size
        self._algorithm = digest.partition(":")[0]
        self._hasher = hashlib.new(self._algorithm)
        self.received = 0

    def actual(self) -> str:
        """The digest of what was received so far."""
        return f"{self._algorithm}:{self._hasher.hexdigest()}"

    def _digest_mismatch(self) -> str | None:
        actual = self.actual()
        return None if actual == self.digest else actual

    def update(self, chunk: bytes) -> str | None:
        """Add a chunk; what is wrong so far (too many bytes, a wrong digest), or None."""
        self.received += len(chunk)
        self._hasher.update(chunk)
        if self.received > self.size:
            return f"more than the {self.size} bytes announced"
        return self._digest_mismatch() if self.received == self.size else None

    def finish(self) -> str | None:
        """At the end of the stream: what is wrong (too few bytes), or None."""
        if self.received < self.size:
            return f"only {self.received} of {self.size} bytes"
        return self._digest_mismatch() if self.size == 0 else None


# --- platforms --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform: what an index entry or an image config is built for."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    def normalized(self) -> Platform:
        """containerd's normal form: lower case, Go's names, default variants dropped."""
        architecture, variant = _normalize_architecture(self.architecture, self.variant)
        return Platform(os=self.os.lower(), architecture=architecture, variant=variant)


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


def host_architecture() -> str:
    """The host's architecture in OCI spelling (amd64, arm64, ...)."""
    return host_platform().architecture


def _normalize_architecture(architecture: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``, plus a bare number as a variant (``8`` is ``v8``)."""
    architecture, variant = architecture.lower(), variant.lower()
    if variant[:1].isdigit():
        variant = f"v{variant}"
    if architecture in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if architecture == "i386":
        return "386", ""
    if architecture in ("aarch64", "arm64"):
        if variant in ("v8", "v8.0"):
            return "arm64", ""
        return "arm64", "v9" if variant == "v9.0" else variant
    if architecture == "armhf":
        return "arm", "v7"
    if architecture == "armel":
        return "arm", "v6"
    if architecture == "arm" and variant == "":
        return "arm", "v7"
    return architecture, variant


def _variant_number(variant: str) -> int | None:
    match = re.fullmatch(r"v([0-9]+)(?:\.[0-9]+)?", variant)
    return int(match.group(1)) if match else None


def compatible_platforms(wanted: Platform) -> tuple[Platform, ...]:
    """Every platform ``wanted`` runs, normalised, best first (containerd's vector)."""
    own = wanted.normalized()
    os_, arch, variant = own.os, own.architecture, own.variant
    vector = [own]
    number = _variant_number(variant)
    if arch == "amd64":
        for level in range(number - 1 if number else 0, 0, -1):
            vector.append(Platform(os_, "amd64", "" if level == 1 else f"v{level}"))
        vector.append(Platform(os_, "386"))
    elif arch == "arm" and number is not None:
        vector.extend(Platform(os_, "arm", f"v{level}") for level in range(number - 1, 4, -1))
    elif arch == "arm64":
        if variant:
            vector.append(Platform(os_, "arm64"))
        vector.extend(Platform(os_, "arm", f"v{level}") for level in range(8, 4, -1))
    return tuple(vector)


def platform_rank(wanted: Platform, candidate: Platform) -> int | None:
    """How well ``candidate`` runs on ``wanted`` (0 best), or ``None`` when it cannot."""
    try:
        return compatible_platforms(wanted).index(candidate.normalized())
    except ValueError:
        return None


# --- documents --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    """Set on the entries of an index (and on the manifest a pull chose from one)."""


@dataclass(frozen=True, slots=True)
class Index:
    """An OCI image index or a Docker manifest list."""

    descriptor: Descriptor
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest for one platform: its config and its layers, bottom first."""

    descriptor: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    """What an image config blob says: how to run it, its layers' diff ids, its platform."""

    run: ImageConfig
    diff_ids: tuple[str, ...]
    """The uncompressed layer digests (``rootfs.diff_ids``), in layer order."""
    platform: Platform
    created: datetime | None


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object; :class:`OciFormatError` names ``what`` otherwise."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise OciFormatError(f"{what} is not valid JSON: {error}") from None
    except RecursionError:  # an archive's or a registry's document nested past the stack
        raise OciFormatError(f"{what} is nested too deeply to be read as JSON") from None
    if not isinstance(document, dict):
        raise OciFormatError(f"{what} is not a JSON object")
    return document


def parse_descriptor(raw: Any, where: str) -> Descriptor:
    """One descriptor of a document; ``where`` names it in errors (``layers[0]``)."""

    def bad(reason: str) -> OciFormatError:
        return OciFormatError(f"{where}: {reason}")

    if not isinstance(raw, dict):
        raise bad("not a descriptor object")
    media_type, digest, size = raw.get("mediaType"), raw.get("digest"), raw.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise bad("missing mediaType")
    if not isinstance(digest, str):
        raise bad("missing digest")
    problem = digest_problem(digest)
    if problem is not None:
        raise bad(problem)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad("size must be a non-negative integer")
    annotations = raw.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise bad("annotations is not an object")
    raw_platform = raw.get("platform")
    if raw_platform is not None and not isinstance(raw_platform, dict):
        raise bad("platform is not an object")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations={str(k): str(v) for k, v in annotations.items()},
        platform=None if raw_platform is None else _platform(raw_platform),
    )


def _platform(raw: Mapping[str, Any]) -> Platform:
    return Platform(
        os=str(raw.get("os") or ""),
        architecture=str(raw.get("architecture") or ""),
        variant=str(raw.get("variant") or ""),
    )


def _descriptors(document: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    entries = document.get(key)
    if not isinstance(entries, list):
        raise OciFormatError(f"`{key}` is missing or not a list")
    return tuple(parse_descriptor(entry, f"{key}[{n}]") for n, entry in enumerate(entries))


def parse_index(data: bytes, descriptor: Descriptor) -> Index:
    """An index blob; errors read ``index <digest>: manifests[2]: missing digest``."""
    what = f"index {descriptor.digest}"
    document = parse_json_object(data, what)
    try:
        return Index(descriptor=descriptor, manifests=_descriptors(document, "manifests"))
    except OciFormatError as error:
        raise OciFormatError(f"{what}: {error}") from None


def parse_manifest(data: bytes, descriptor: Descriptor) -> Manifest:
    """A manifest blob; errors read ``manifest <digest>: layers[0]: missing digest``."""
    what = f"manifest {descriptor.digest}"
    document = parse_json_object(data, what)
    try:
        config = parse_descriptor(document.get("config"), "config")
        layers = _descriptors(document, "layers")
    except OciFormatError as error:
        raise OciFormatError(f"{what}: {error}") from None
    if len(layers) > MAX_LAYERS:
        raise OciFormatError(
            f"{what}: {len(layers)} layers, more than the {MAX_LAYERS} overlayfs can stack"
        )
    return Manifest(descriptor=descriptor, config=config, layers=layers)


def detect_media_type(data: bytes, content_type: str = "") -> str:
    """Whether a manifest blob is an index or a manifest (OCI or Docker), from its own
    ``mediaType``, else the ``Content-Type`` it came with, else its shape (OCI lets
    ``mediaType`` out; registries then often say ``application/json``)."""
    document = parse_json_object(data, "manifest")
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):  # a list is no set member
        raise OciFormatError(f"manifest: mediaType is not a string ({type(declared).__name__})")
    if content_type in DOCKER_SCHEMA1_MEDIA_TYPES or document.get("schemaVersion") == 1:
        raise OciFormatError(
            "Docker schema 1 manifests are not supported; push the image again "
            "with a current client"
        )
    for candidate in (declared, content_type):
        if candidate in INDEX_MEDIA_TYPES or candidate in MANIFEST_MEDIA_TYPES:
            return str(candidate)
    if isinstance(document.get("manifests"), list):
        return MEDIA_TYPE_OCI_INDEX
    if isinstance(document.get("config"), dict):
        return MEDIA_TYPE_OCI_MANIFEST
    raise OciFormatError(
        f"unsupported manifest media type {declared or content_type or 'unknown'!r}"
    )


def choose_manifest(index: Index, wanted: Platform) -> tuple[int, Descriptor]:
    """The position and descriptor of the entry ``wanted`` runs best (containerd's order):
    the best rank, the first of equals; an entry without platform only when none matches.
    Raises :class:`PlatformNotFoundError` listing what the index offers."""
    best: tuple[int, int] | None = None
    fallback: int | None = None
    for position, entry in enumerate(index.manifests):
        if entry.platform is None:
            fallback = position if fallback is None else fallback
            continue
        rank = platform_rank(wanted, entry.platform)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, position)
    chosen = best[1] if best is not None else fallback
    if chosen is None:
        offered = [entry.platform for entry in index.manifests if entry.platform is not None]
        raise PlatformNotFoundError(wanted, offered)
    return chosen, index.manifests[chosen]


# --- image configs ----------------------------------------------------------------------


def parse_config(data: bytes) -> ConfigDocument:
    """An image config blob: run defaults, diff ids, platform and creation time."""
    document = parse_json_object(data, "image config")
    run = document.get("config") or {}
    rootfs = document.get("rootfs") or {}
    if not isinstance(run, dict):
        raise OciFormatError("image config: config is malformed (not an object)")
    if not isinstance(rootfs, dict):
        raise OciFormatError("image config: rootfs is malformed (not an object)")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(
        isinstance(item, str) and digest_problem(item) is None for item in diff_ids
    ):
        raise OciFormatError("image config: rootfs.diff_ids is not a list of digests")
    labels = run.get("Labels") or {}
    if not isinstance(labels, dict):
        raise OciFormatError("image config: config.Labels is not an object")
    return ConfigDocument(
        run=ImageConfig(
            entrypoint=_strings(run, "Entrypoint"),
            cmd=_strings(run, "Cmd"),
            env=_strings(run, "Env"),
            working_dir=str(run.get("WorkingDir") or ""),
            user=str(run.get("User") or ""),
            labels={str(k): str(v) for k, v in labels.items()},
            stop_signal=str(run.get("StopSignal") or ""),
        ),
        diff_ids=tuple(diff_ids),
        platform=_platform(document),
        created=parse_created(document.get("created")),
    )


def _strings(run: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = run.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise OciFormatError(f"image config: config.{key} is not a list of strings")
    return tuple(value)


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
