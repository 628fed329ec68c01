"""A blob written into a containerd whose disk is full fails with containerd's own words.

containerd ends a Write call with its refusal (ENOSPC) as soon as one request fails. A
client that streamed its requests without waiting for the answers read, about once in a
few dozen writes, grpc.aio's INTERNAL "Internal error from Core" instead (the status of a
call ended while the client was still writing is lost): a full disk then looked like an
archive at fault (422, not 507) in CI. Each write here sends many small chunks as fast as
they come, so every one of them races containerd's end."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import grpc
import pytest

from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdCallError
from kukeon.runtime.containerd.oci import digest_of
from tests.fixtures.containerd import PrivateContainerd
from tests.fixtures.fulldisk import containerd_on_tmpfs, fill

_WRITES = 40
_CHUNK = 16 << 10


@pytest.fixture
async def small_containerd() -> AsyncIterator[PrivateContainerd]:
    async with containerd_on_tmpfs("24m") as small:
        yield small


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        yield data[start : start + _CHUNK]


async def test_every_write_into_a_full_disk_says_no_space(
    small_containerd: PrivateContainerd,
) -> None:
    ingest = small_containerd.root / "io.containerd.content.v1.content" / "ingest"
    async with ContainerdClient(small_containerd.address, retry_timeout=10.0) as client:
        namespace = "kukeon-test-full"
        await client.namespaces.ensure(namespace)
        filler = await asyncio.to_thread(fill, small_containerd.root, leave=1 << 20)
        try:
            async with client.leases(namespace).lease() as lease:
                store = client.content(namespace, lease=lease)
                refusals: list[tuple[grpc.StatusCode, str]] = []
                for _ in range(_WRITES):
                    data = os.urandom(4 << 20)
                    with pytest.raises(ContainerdCallError) as raised:
                        await store.write_blob(
                            digest=digest_of(data), size=len(data), chunks=_chunks(data)
                        )
                    refusals.append((raised.value.code, raised.value.detail))
                lost = [r for r in refusals if "no space left on device" not in r[1]]
                assert lost == [], f"{len(lost)} of {_WRITES} writes lost their cause: {lost[:3]}"
                # Each refused write was taken back: nothing half-written stays.
                assert not ingest.exists() or list(ingest.iterdir()) == []
        finally:
            filler.unlink()
            await client.namespaces.delete(namespace)
