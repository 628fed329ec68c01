"""Small records shared by the containerd client, the image puller and the spec builder.

They live apart so that pure code (the OCI runtime spec builder, the registry client) can be
used and tested without a containerd connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What an image's config blob says about how to run it (OCI image-spec `config`)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    """`StopSignal` as the image gives it (`SIGQUIT`, `3`...); empty: SIGTERM."""


@dataclass(frozen=True, slots=True)
class RegistryCredential:
    """Credentials for one registry host, from a realm's `registryCredentials`."""

    server_address: str
    username: str
    password: str


class BlobStore(Protocol):
    """Where fetched image blobs go: containerd's content store implements it.

    `write_blob` must verify the digest of what it stored and raise on a mismatch, so a
    puller never has to trust the network.
    """

    async def has_blob(self, digest: str) -> bool: ...

    async def write_blob(
        self,
        *,
        digest: str,
        size: int,
        chunks: AsyncIterator[bytes],
        labels: Mapping[str, str] | None = None,
    ) -> None: ...

    async def read_blob(self, digest: str) -> bytes: ...
