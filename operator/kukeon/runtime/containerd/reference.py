"""Image references and registry hosts: what a name like ``busybox`` means and where to fetch it.

- image references are parsed by ``kukeon.api.imageref`` (Docker's grammar: ``busybox`` is
  ``docker.io/library/busybox:latest``; a first path component with a dot, a colon or
  ``localhost`` names a registry), the one parser the API server checks writes with;
- a realm credential's ``serverAddress`` is matched to a registry by host, whatever form
  it was pasted in (``https://index.docker.io/v1/`` is Docker Hub);
- the registries kukeond's configuration lists are spoken to over plain HTTP, everything
  else over HTTPS; a registry on the node is pulled from only when listed (``registryaccess``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from kukeon.api.imageref import (
    DOCKER_HUB,
    DOCKER_HUB_ENDPOINT,
    ImageReference,
    InvalidReferenceError,
    is_listed_registry,
    normalize_registry_host,
    parse_reference,
)
from kukeon.runtime.containerd.types import RegistryCredential

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_ENDPOINT",
    "ImageReference",
    "InvalidReferenceError",
    "credential_for",
    "normalize_registry_host",
    "parse_reference",
    "registry_scheme",
]


def credential_for(
    registry: str, credentials: Sequence[RegistryCredential]
) -> RegistryCredential | None:
    """The credential for ``registry``: the first whose server address names it. One
    without a server address is for no registry (it would go to any an image names)."""
    wanted = normalize_registry_host(registry)
    for credential in credentials:
        if (
            credential.server_address.strip()
            and normalize_registry_host(credential.server_address) == wanted
        ):
            return credential
    return None


def registry_scheme(registry: str, insecure_registries: Collection[str]) -> str:
    """``http`` for the registries kukeond's configuration lists, else ``https`` (a
    loopback registry is no exception: see ``registryaccess``).

    An entry without a port covers every port of that host.
    """
    return "http" if is_listed_registry(registry, insecure_registries) else "https"
