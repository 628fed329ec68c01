"""A create cut short leaves containerd a bundle it cannot clear; the next create clears it.

containerd 1.6 removes the bundle of a create that failed after its shim started only if
the shim binary's ``delete`` finishes within 5 s (``cleanupAfterDeadShim``); on a loaded
machine it may not, and every later create of that id was refused with ``failed to start
shim: mkdir ...: file exists`` until containerd restarted (seen once in
test_crash_recovery at load 10-20). Here a shim wrapper makes the first ``runc create`` and
the first ``delete`` slower than containerd's 5 s, as that load did, and the create is
cut after a second, as kukeond's death cuts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import pytest

from kukeon.runtime.containerd import TaskIO, TaskStatus
from tests.fixtures.containerd import PrivateContainerd
from tests.integration.containerd.helpers import Runner

pytestmark = pytest.mark.integration

SLOWER_THAN_CONTAINERD = 6  # its io.containerd.timeout.shim.cleanup is 5 s


def slow_once_shim(directory: Path) -> Path:
    """A runc v2 shim whose first ``runc create`` and first ``delete`` take 6 s."""
    bin_dir = directory / "slowbin"
    bin_dir.mkdir(parents=True)
    runc = bin_dir / "runc"
    runc.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do if [ "$a" = create ] && mkdir {directory}/created 2>/dev/null;'
        f" then sleep {SLOWER_THAN_CONTAINERD}; fi; done\n"
        'exec /usr/bin/runc "$@"\n'
    )
    shim = directory / "containerd-shim-slow-v2"
    shim.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do if [ "$a" = delete ] && mkdir {directory}/deleted 2>/dev/null;'
        f" then sleep {SLOWER_THAN_CONTAINERD}; fi; done\n"
        f'PATH={bin_dir}:$PATH exec /usr/bin/containerd-shim-runc-v2 "$@"\n'
    )
    runc.chmod(0o755)
    shim.chmod(0o755)
    return shim


async def _containerd_gave_up(daemon: PrivateContainerd, container_id: str, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        for line in (await asyncio.to_thread(daemon.log.read_text, errors="replace")).splitlines():
            if (
                "failed to clean up after shim disconnected" in line
                and f"id={container_id}" in line
            ):
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"containerd did not fail to clean {container_id} up")


async def test_a_bundle_left_by_a_cut_create_is_cleared_by_the_next_create(
    runner: Runner, containerd_daemon: PrivateContainerd, tmp_path: Path
) -> None:
    client, namespace = runner.client, runner.namespace
    container_id = f"cut-{secrets.token_hex(3)}"
    spec = await runner.spec({"command": "sleep", "args": ["300"]}, container_id=container_id)
    shim = slow_once_shim(tmp_path / "shim")
    await client.containers(namespace).create(
        container_id, image=runner.image, spec=spec, runtime=str(shim)
    )
    tasks = client.tasks(namespace)
    log = runner.log_dir / f"{container_id}.log"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.0):
            await tasks.create(container_id, io=TaskIO.log_file(log))
    await _containerd_gave_up(containerd_daemon, container_id, within=30)
    bundle = containerd_daemon.state / "io.containerd.runtime.v2.task" / namespace / container_id
    assert bundle.is_dir(), "containerd cleared its bundle: nothing left to test"
    assert container_id not in {task.container_id for task in await tasks.list()}

    await tasks.create(container_id, io=TaskIO.log_file(log))  # was: file exists
    await tasks.start(container_id)
    task = await tasks.get(container_id)
    assert task.status == TaskStatus.RUNNING
    assert not bundle.with_name(f".{container_id}").exists()
    await tasks.stop(container_id, grace_period=1)
    await tasks.delete(container_id)
    assert not bundle.exists()
