"""Image references: what a name like ``busybox`` means, and whether it is one at all.

One grammar for the whole project, in the layer every other may import: the node parses
references with it to find and pull images (``runtime.containerd.reference``), and the API
server and kukectl check a write's images with it (``api.imagefields``): what one accepts,
the others accept.

It is Docker's (``github.com/distribution/reference``, which containerd parses with):

- the name is path components of lowercase letters and digits, separated by ``.``, ``_``,
  ``__`` or runs of ``-``, at most 255 characters with its registry (``docker.io/library/``
  counted for a Docker Hub name, as Docker counts it);
- its first component names a registry when it has a ``.`` or a ``:``, is ``localhost``,
  has an upper-case letter or is a bracketed IPv6 address: host labels (of either case) or
  ``[IPv6]``, and an optional port; a bare name lands on Docker Hub (``busybox`` is
  ``docker.io/library/busybox``; ``index.docker.io`` is ``docker.io``, as Docker's legacy name);
- a tag is ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; a digest ``algorithm:hex``, of an
  algorithm containerd verifies (sha256, sha384, sha512) in lowercase hex of its length;
- a name of exactly 64 lowercase hex digits is refused, as Docker refuses it (it reads as an
  image id).

Stricter than Docker where no registry could be reached (a port outside 1-65535, a
bracketed host that is not an IPv6 address); more lenient in one way only: blanks around
the reference are ignored (they always were on the node, and stored cells may have them).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from kukeon.api.meta import quote

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_ENDPOINT: Final = "registry-1.docker.io"
DOCKER_HUB_ALIASES: Final = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
"""The names of Docker Hub a credential's ``serverAddress`` or a reference may use."""

DIGEST_HEX_LENGTHS: Final = {"sha256": 64, "sha384": 96, "sha512": 128}
"""The digest algorithms containerd verifies, and the length of each one's hex."""

_DIGEST: Final = re.compile(
    r"(?P<algorithm>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<encoded>[a-zA-Z0-9=_-]+)"
)
_PATH_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST_LABEL: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN: Final = re.compile(
    rf"(?P<host>{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[(?P<ipv6>[0-9A-Fa-f:]+)\])(?::(?P<port>[0-9]+))?"
)
_IMAGE_ID: Final = re.compile(r"[a-f0-9]{64}")
MAX_NAME_LENGTH: Final = 255


class InvalidReferenceError(ValueError):
    """An image reference that is not well-formed: a user mistake, named in the message."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"invalid image reference {quote(reference)}: {reason}")


def digest_problem(digest: str) -> str | None:
    """Why ``digest`` is not a digest kukeon can verify, or ``None`` when it is one."""
    match = _DIGEST.fullmatch(digest)
    if match is None:
        return f"digest {quote(digest)} is not <algorithm>:<hex>"
    algorithm, encoded = match.group("algorithm"), match.group("encoded")
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        return f"unsupported digest algorithm {quote(algorithm)}"
    if len(encoded) != length or not re.fullmatch(r"[a-f0-9]+", encoded):
        return f"{algorithm} digest must be {length} lowercase hex characters"
    return None


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
        return split_host_port(self.registry)[0]

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
    if _IMAGE_ID.fullmatch(text):
        raise InvalidReferenceError(
            original, "64 hexadecimal digits are an image id, not a name (Docker's rule)"
        )
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
                original, f"tag {quote(tag)} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
            )
    if not remainder:
        raise InvalidReferenceError(original, "missing repository name")
    registry, repository = _split_registry(original, remainder)
    for component in repository.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            raise InvalidReferenceError(
                original,
                f"repository path component {quote(component)} must be lowercase letters and "
                "digits separated by '.', '_', '__' or '-'",
            )
    if len(f"{registry}/{repository}") > MAX_NAME_LENGTH:
        raise InvalidReferenceError(original, f"name longer than {MAX_NAME_LENGTH} characters")
    if registry.lower() in DOCKER_HUB_ALIASES:  # every name of Docker Hub is Docker Hub
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(registry=registry, repository=repository, tag=tag, digest=digest)


def normalize_registry_host(server_address: str) -> str:
    """The registry a credential's ``serverAddress`` names, in reference form.

    Accepts what people paste: ``https://index.docker.io/v1/``, ``registry-1.docker.io``,
    ``http://127.0.0.1:5000/``, ``Registry.Example.com``.
    """
    address = server_address.strip()
    if "://" in address:
        address = address.split("://", 1)[1]
    address = address.split("/", 1)[0].lower()
    return DOCKER_HUB if address in DOCKER_HUB_ALIASES else address


def reference_problem(text: str) -> str | None:
    """Why ``text`` is not an image reference (the parser's message), or None."""
    try:
        parse_reference(text)
    except InvalidReferenceError as error:
        return str(error)
    return None


def _split_registry(original: str, name: str) -> tuple[str, str]:
    """The registry and repository of a name without tag or digest, as Docker splits them
    (Docker counts the name's length so, before kukeon's other names of Docker Hub are
    made ``docker.io``)."""
    first, slash, rest = name.partition("/")
    if slash and (
        "." in first
        or ":" in first
        or first == "localhost"
        or first.startswith("[")
        or first != first.lower()
    ):
        registry, repository = _check_domain(original, first), rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository


def _check_digest(original: str, digest: str) -> str:
    problem = digest_problem(digest)
    if problem is not None:
        raise InvalidReferenceError(original, problem)
    return digest


def _check_domain(original: str, domain: str) -> str:
    match = _DOMAIN.fullmatch(domain)
    if match is None:
        raise InvalidReferenceError(original, f"registry {quote(domain)} is not a host[:port]")
    if match.group("ipv6") is not None:
        try:
            ipaddress.IPv6Address(match.group("ipv6"))
        except ValueError:
            raise InvalidReferenceError(
                original, f"registry {quote(domain)} has a bad IPv6 address"
            ) from None
    port = match.group("port")
    if port is not None and (len(port) > 5 or not 0 < int(port) < 65536):
        raise InvalidReferenceError(original, f"registry port {quote(port, 12)} is out of range")
    return domain


def split_host_port(registry: str) -> tuple[str, int | None]:
    """A registry's host (lowercase, without IPv6 brackets) and port."""
    if registry.startswith("["):
        host, _, after = registry[1:].partition("]")
        port = after[1:] if after.startswith(":") else ""
    else:
        host, _, port = registry.partition(":")
    return host.lower(), int(port) if port else None


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REGISTRY_LISTING: Final = (
    "kukeond's configuration lists it (insecureRegistries, --insecure-registry)"
)
"""The one way to allow a registry on the node or over plain HTTP, as each refusal says."""


def is_listed_registry(registry: str, listed: Collection[str]) -> bool:
    """Whether ``registry`` (``host[:port]``) is one of ``listed`` (kukeond's
    ``insecureRegistries``); an entry without a port covers every port of its host."""
    wanted = normalize_registry_host(registry)
    wanted_host, _ = split_host_port(wanted)
    for entry in listed:
        normalized = normalize_registry_host(entry)
        entry_host, entry_port = split_host_port(normalized)
        if normalized == wanted or (entry_port is None and entry_host == wanted_host):
            return True
    return False


def local_address_kind(
    address: IPAddress, own: Collection[IPAddress] = (), cells: Collection[IPNetwork] = ()
) -> str | None:
    """What makes ``address`` the node's own: loopback, link-local, unspecified, one of
    ``own`` (the node's addresses), or in one of ``cells`` (the networks of the node's
    cells, reached from the host's namespace past every realm's isolation); None when it
    is none of them."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address (this node)"
    if address in own:
        return "an address of this node"
    for network in cells:
        if address in network:
            return f"a cell's address (in {network}, a cell network of this node)"
    return None


def local_host_kind(
    host: str, own: Collection[IPAddress] = (), cells: Collection[IPNetwork] = ()
) -> str | None:
    """``local_address_kind`` of a registry host (``localhost`` and ``*.localhost`` are
    loopback names); None for another name, which only resolving can judge."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "a loopback name"
    try:
        return local_address_kind(ipaddress.ip_address(name.partition("%")[0]), own, cells)
    except ValueError:
        return None


def registry_refusal(
    registry: str,
    listed: Collection[str],
    own: Collection[IPAddress] = (),
    cells: Collection[IPNetwork] = (),
) -> str | None:
    """Why kukeond pulls nothing from ``registry`` (``host[:port]``): a host on the node
    (``local_host_kind``) it does not list; None otherwise."""
    if is_listed_registry(registry, listed):
        return None
    kind = local_host_kind(split_host_port(registry)[0], own, cells)
    if kind is None:
        return None
    return (
        f"{registry} is {kind}: kukeond pulls from a host on the node only when {REGISTRY_LISTING}"
    )
