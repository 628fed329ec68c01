"""The failures of talking to a registry, and the registry's own error document.

Every error names the registry and the reference (``registry ghcr.io: ghcr.io/org/app:1:
...``); :func:`error_suffix` adds what the registry said (``{"errors": [...]}``).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Self

import aiohttp

from kukeon.runtime.containerd.registrybody import (
    DOCUMENT_SECONDS,
    BodyCodingError,
    BodyTooSlowError,
    body_chunks,
)

if TYPE_CHECKING:
    from kukeon.runtime.containerd.reference import ImageReference


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


class RegistryCodingError(RegistryError):
    """The registry's answer is coded as kukeon did not ask (``Content-Encoding: zstd``), or
    its coding does not decode."""


def body_error(
    ref: ImageReference, what: str, error: BodyCodingError | BodyTooSlowError
) -> RegistryError:
    """The pull's failure for a body ``registrybody`` would not take."""
    if isinstance(error, BodyCodingError):
        return RegistryCodingError.about(ref, f"{what}: {error}")
    return RegistryUnreachableError.about(ref, f"{what}: too slow: {error}")


class RegistryResponseError(RegistryError):
    """The registry answered with an unexpected HTTP status."""

    def __init__(self, *, registry: str, reference: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(registry=registry, reference=reference, message=message)


async def error_suffix(response: aiohttp.ClientResponse) -> str:
    """The registry's error codes and messages (``{"errors": [...]}``) as a message suffix."""
    try:
        raw = await read_at_most(response, 64 * 1024)
        document = json.loads(raw) if raw is not None else None
    except (ValueError, aiohttp.ClientError, TimeoutError, UnicodeDecodeError, RecursionError):
        return ""  # RecursionError: a registry's JSON nested past Python's stack
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if isinstance(error, dict):
            code, message = error.get("code", ""), error.get("message", "")
            parts.append(f"{code}: {message}" if message else str(code))
    return f" ({'; '.join(parts)})" if parts else ""


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, decoded, or ``None`` as soon as it exceeds ``limit`` bytes; within
    ``DOCUMENT_SECONDS`` (``BodyTooSlowError``). A coding refused or broken is a
    ``BodyCodingError``."""
    parts: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(DOCUMENT_SECONDS):
            async for chunk in body_chunks(response, 64 * 1024):
                total += len(chunk)
                if total > limit:
                    return None
                parts.append(chunk)
    except TimeoutError as error:
        if isinstance(error, BodyTooSlowError):
            raise
        raise BodyTooSlowError(
            f"a document was not sent whole within {DOCUMENT_SECONDS:g} s ({total} bytes by then)"
        ) from None
    return b"".join(parts)
