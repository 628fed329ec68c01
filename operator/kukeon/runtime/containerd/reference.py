"""Image references and registry hosts: what a name like ``busybox`` means and where to fetch it.

- image references are parsed the way Docker does (``busybox`` is
  ``docker.io/library/busybox:latest``; a first path component with a dot, a colon or
  ``localhost`` names a registry);
- a realm credential's ``serverAddress`` is matched to a registry by host, whatever form
  it was pasted in (``https://index.docker.io/v1/`` is Docker Hub);
- registries on loopback and those listed as insecure are spoken to over plain HTTP,
  everything else over HTTPS.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from kukeon.runtime.containerd.oci import digest_problem
from kukeon.runtime.containerd.types import RegistryCredential

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_ENDPOINT: Final = "registry-1.docker.io"
_DOCKER_HUB_ALIASES: Final = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)

# A manifest or image config larger than this is not an image, it is an attack or a mistake


class InvalidReferenceError(ValueError):
    """An image reference that is not well-formed: a user mistake, named in the message."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"invalid image reference {reference!r}: {reason}")


# --- references -------------------------------------------------------------------------

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?P<host>{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]+))?"
)
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
    problem = digest_problem(digest)
    if problem is not None:
        raise InvalidReferenceError(original, problem)
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
