"""Fixtures of the containerd integration tests (the daemon itself: tests/fixtures)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.runtime.containerd import ContainerdClient
from tests.fixtures.containerd import BusyboxImage, clean_namespace
from tests.integration.containerd.helpers import Runner, new_test_cgroup


@pytest.fixture
async def runner(
    containerd_client: ContainerdClient,
    containerd_namespace: str,
    containerd_test_image: BusyboxImage,
    containerd_image: str,
    tmp_path: Path,
) -> AsyncIterator[Runner]:
    cgroup = new_test_cgroup()
    try:
        yield Runner(
            client=containerd_client,
            namespace=containerd_namespace,
            image=containerd_image,
            archive=containerd_test_image.archive,
            cgroup=cgroup,
            log_dir=tmp_path / "logs",
        )
    finally:
        # This runs before the namespace fixture's own cleanup: tasks must be gone before
        # their cgroup parent can be removed.
        await clean_namespace(containerd_client, containerd_namespace)
        cgroup.remove()
