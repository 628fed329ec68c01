"""A blob containerd stores for one namespace (one realm) goes into another only with its
bytes, against a real containerd.

containerd's content store is shared between namespaces (its default "shared" policy): a
writer that names a digest the store holds may commit it without sending a byte. 198cf727
used that to skip the upload of a blob another realm had, and so an archive a realm's
editor imports could name another realm's private layer by its digest, with any bytes of
its size in the archive's place, and have that layer in their realm. Every blob is sent and
checked, whatever another namespace holds."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator

import pytest

from kukeon.runtime.containerd import BlobDigestMismatchError, ContainerdClient
from tests.fixtures.containerd import fresh_namespace

pytestmark = pytest.mark.integration


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def other_namespace(containerd_client: ContainerdClient) -> AsyncIterator[str]:
    async with fresh_namespace(containerd_client) as name:
        yield name


@pytest.mark.parametrize("extra", [0, 1], ids=["same size", "another size"])
async def test_a_blob_another_namespace_holds_is_not_had_without_its_bytes(
    containerd_client: ContainerdClient,
    containerd_namespace: str,
    other_namespace: str,
    extra: int,
) -> None:
    data = secrets.token_bytes(300_000)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    # The owner's lease is held throughout: otherwise the blob, referenced by nothing,
    # could be collected before the second write and the test would prove nothing.
    async with (
        containerd_client.leases(containerd_namespace).lease() as owners_lease,
        containerd_client.leases(other_namespace).lease() as lease,
    ):
        owner = containerd_client.content(containerd_namespace, lease=owners_lease)
        await owner.write_blob(digest=digest, size=len(data), chunks=_chunks(data))
        other = containerd_client.content(other_namespace, lease=lease)
        forged = bytes(len(data) + extra)  # what the archive holds in the blob's place
        with pytest.raises(BlobDigestMismatchError):
            await other.write_blob(digest=digest, size=len(forged), chunks=_chunks(forged))
        assert await other.has_blob(digest) is False
        assert await owner.read_blob(digest) == data
