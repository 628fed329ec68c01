"""Image references and registry hosts: what a name like ``busybox`` means and where to fetch it.

- image references are parsed by ``kukeon.api.imageref`` (Docker's grammar: ``busybox`` is
  ``docker.io/library/busybox:latest``; a first path component with a dot, a colon or
  ``localhost`` names a registry), the one parser the API server checks writes with;
- a realm credential's ``serverAddress`` is matched to a registry by host, whatever form
  it was pasted in (``https://index.docker.io/v1/`` is Docker Hub);
- registries on loopback and those listed as insecure are spoken to over plain HTTP,
  everything else over HTTPS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Sequence

from kukeon.api.imageref import (
    DOCKER_HUB,
    DOCKER_HUB_ENDPOINT,
    ImageReference,
    InvalidReferenceError,
    normalize_registry_host,
    parse_reference,
    split_host_port,
)
from kukeon.runtime.containerd.types import RegistryCredential

__all__ = [
    "DOCKER_HUB",
    "DOCKER_HUB_ENDPOINT",
    "ImageReference",
    "InvalidReferenceError",
    "credential_for",
    "is_loopback_registry",
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


def is_loopback_registry(registry: str) -> bool:
    host, _ = split_host_port(registry)
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
    wanted_host, _ = split_host_port(wanted)
    for entry in insecure_registries:
        listed = normalize_registry_host(entry)
        if listed == wanted:
            return "http"
        listed_host, listed_port = split_host_port(listed)
        if listed_port is None and listed_host == wanted_host:
            return "http"
    return "https"
