"""A pull cancelled midway (no cell waits for it any more, kukeond stops) leaves nothing in
containerd: its lease is released with a collection run, as a failed pull's is, so the
blobs it stored and the layer it was writing go at once. Before, a cancellation released
the lease without one (the release saw no failure in a CancelledError): the config blob
and the half-written layer stayed until containerd's collector next ran by itself. Real
containerd; the registry on loopback, dripping the layer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from kukeon.cancelling import cancel_and_wait
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd._gen.services.content.v1 import content_pb2
from kukeon.runtime.containerd.pull import pull_image
from tests.integration.controllers.test_slow_pull_other_realms import Slow
from tests.unit.runtime.test_hostile_registry import Hostile, serve
from tests.unit.runtime.test_registry_client import make_image

pytestmark = pytest.mark.integration


@pytest.fixture
async def dripping() -> AsyncIterator[tuple[Hostile, str]]:
    """A registry dripping its one layer (12 minutes) and its host:port."""
    registry = Hostile(make_image(layer_count=1))
    registry.blob = Slow()
    server = await serve(registry)
    try:
        yield registry, f"127.0.0.1:{server.port}"
    finally:
        await server.close()


async def ingests(client: ContainerdClient, namespace: str) -> list[str]:
    """The refs of the namespace's writes under way (``ctr content active``)."""
    response = await client.stubs.content.ListStatuses(
        content_pb2.ListStatusesRequest(), metadata=client.metadata(namespace)
    )
    return [status.ref for status in response.statuses]


async def _until(condition: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def test_a_cancelled_pull_leaves_no_lease_blob_or_ingest(
    dripping: tuple[Hostile, str],
    containerd_client: ContainerdClient,
    containerd_namespace: str,
) -> None:
    (registry, host), namespace = dripping, containerd_namespace
    content = containerd_client.content(namespace)
    pull = asyncio.create_task(
        pull_image(
            containerd_client,
            namespace,
            f"{host}/app:1",
            insecure_registries=["127.0.0.1"],
        )
    )
    try:
        layer = registry.image.layer_digests[0].replace(":", "-")

        async def writing() -> bool:  # the layer's first bytes are in containerd
            return any(layer in ref for ref in await ingests(containerd_client, namespace))

        await _until(writing, 30)
        assert await content.has_blob(registry.image.config_digest)
        assert await containerd_client.leases(namespace).list()
    finally:
        await cancel_and_wait(pull)
    assert pull.cancelled()
    # At once: nothing waits for containerd's collector to come by.
    left = (
        await containerd_client.leases(namespace).list(),
        await ingests(containerd_client, namespace),
        await content.sizes(),
    )
    assert left == ([], [], {})
