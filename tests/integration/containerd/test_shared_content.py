"""A blob containerd stores for one namespace is committed into another without being sent
again (its content store is shared between namespaces), against a real containerd."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import AsyncIterator

import pytest

from kukeon.runtime.containerd import BlobDigestMismatchError, ContainerdClient
from kukeon.runtime.containerd._gen.services.leases.v1 import leases_pb2
from tests.fixtures.containerd import BusyboxImage, clean_namespace

pytestmark = pytest.mark.integration

_SHARED = "taken from the shared content store"


class _ReadError(Exception):
    """The source of a blob containerd has already was read."""


async def _unread() -> AsyncIterator[bytes]:
    raise _ReadError("the blob was sent again")
    yield b""  # an async generator: nothing runs until it is read


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def other_namespace(containerd_client: ContainerdClient) -> AsyncIterator[str]:
    name = f"kt-{secrets.token_hex(4)}"
    await containerd_client.namespaces.ensure(name, labels={"kukeon.io/test": "true"})
    try:
        yield name
    finally:
        await clean_namespace(containerd_client, name)


async def _lease_holds(client: ContainerdClient, namespace: str, lease: str) -> set[str]:
    response = await client.stubs.leases.ListResources(
        leases_pb2.ListResourcesRequest(id=lease), metadata=client.metadata(namespace)
    )
    return {resource.id for resource in response.resources if resource.type == "content"}


async def test_a_blob_another_namespace_has_is_not_sent_again(
    containerd_client: ContainerdClient, containerd_namespace: str, other_namespace: str
) -> None:
    data = secrets.token_bytes(300_000)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    # The first lease is held throughout: the blob, referenced by nothing else, would be
    # garbage once it ends, and containerd could collect it before the second write.
    async with (
        containerd_client.leases(containerd_namespace).lease() as first_lease,
        containerd_client.leases(other_namespace).lease() as lease,
    ):
        first = containerd_client.content(containerd_namespace, lease=first_lease)
        await first.write_blob(digest=digest, size=len(data), chunks=_chunks(data))
        second = containerd_client.content(other_namespace, lease=lease)
        assert await second.has_blob(digest) is False
        await second.write_blob(
            digest=digest, size=len(data), chunks=_unread(), labels={"kukeon.io/x": "y"}
        )
        # In the namespace now, with the write's labels, under the write's lease.
        info = await second.info(digest)
        assert (info.size, info.labels) == (len(data), {"kukeon.io/x": "y"})
        assert await second.read_blob(digest) == data
        assert digest in await _lease_holds(containerd_client, other_namespace, lease)


async def test_a_shared_blob_of_another_size_is_sent_and_refused(
    containerd_client: ContainerdClient, containerd_namespace: str, other_namespace: str
) -> None:
    """The stored blob is taken only for the size the writer expects: a descriptor with
    the digest but another size writes what it has, which does not match."""
    data = secrets.token_bytes(3000)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    async with containerd_client.leases(containerd_namespace).lease() as lease:
        first = containerd_client.content(containerd_namespace, lease=lease)
        await first.write_blob(digest=digest, size=len(data), chunks=_chunks(data))
        async with containerd_client.leases(other_namespace).lease() as other_lease:
            second = containerd_client.content(other_namespace, lease=other_lease)
            longer = data + b"x"
            with pytest.raises(BlobDigestMismatchError):
                await second.write_blob(digest=digest, size=len(longer), chunks=_chunks(longer))
            assert await second.has_blob(digest) is False


async def test_importing_an_archive_a_second_time_elsewhere_sends_no_blob(
    containerd_client: ContainerdClient,
    containerd_namespace: str,
    other_namespace: str,
    containerd_test_image: BusyboxImage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The test image imported into one namespace, then into another: the second import
    sends none of its blobs (layer, config, manifest) and its image is whole (unpacked,
    its config read from its own namespace)."""
    first = containerd_client.images(containerd_namespace)
    [image] = await first.import_archive(containerd_test_image.archive)
    manifest = await first.manifest(image.name)
    blobs = {
        manifest.config.digest,
        image.target.digest,
        *(layer.digest for layer in manifest.layers),
    }

    second = containerd_client.images(other_namespace)
    with caplog.at_level(logging.DEBUG, logger="kukeon.runtime.containerd.content"):
        [again] = await second.import_archive(containerd_test_image.archive)
    shared = {
        record.args[1]
        for record in caplog.records
        if _SHARED in record.getMessage() and isinstance(record.args, tuple)
    }
    assert shared == blobs
    assert again.target == image.target
    assert await second.config(again.name) == await first.config(image.name)
    content = containerd_client.content(other_namespace)
    for layer in manifest.layers:
        assert "containerd.io/uncompressed" in (await content.info(layer.digest)).labels
