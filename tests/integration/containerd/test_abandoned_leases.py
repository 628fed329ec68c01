"""A lease whose holder no longer runs is released with what only it kept: a kukeond
killed in an image import left its blobs and layers pinned for the lease's hour, also
after the image was removed. A live holder's lease stays."""

from __future__ import annotations

import subprocess

import pytest

from kukeon.processes import identify
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.leases import LABEL_HOLDER, _boot_id

pytestmark = pytest.mark.integration


def _ended_process() -> str:
    """The holder label of a process that ran and ended (a killed kukeond)."""
    child = subprocess.Popen(["sleep", "30"])
    alive = identify(child.pid)
    assert alive is not None
    child.kill()
    child.wait()
    return f"{_boot_id()}/{child.pid}/{alive.started}"


async def test_only_the_leases_of_ended_holders_are_released(
    containerd_client: ContainerdClient, containerd_namespace: str
) -> None:
    leases = containerd_client.leases(containerd_namespace)
    dead = await leases.create(labels={LABEL_HOLDER: _ended_process()})
    live = await leases.create()  # this test's process holds it
    blob = b"what a killed import wrote" * 100
    content = containerd_client.content(containerd_namespace, lease=dead.id)
    digest = await content.write_bytes(blob)
    assert await containerd_client.content(containerd_namespace).has_blob(digest)

    assert await leases.release_abandoned() == (dead.id,)

    assert [lease.id for lease in await leases.list()] == [live.id]
    # Collected at once (the release runs containerd's collector), not an hour later.
    assert not await containerd_client.content(containerd_namespace).has_blob(digest)
    assert await leases.release_abandoned() == ()
