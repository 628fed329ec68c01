"""NamespaceService.purge: a realm's namespace goes even with everything containerd keeps in it."""

from __future__ import annotations

import contextlib
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from kukeon.api import ContainerSpec
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.namespacedirs import RUNC_ROOT, TASK_PLUGIN_DIR
from kukeon.runtime.containerd.spec import SpecContext, build_runtime_spec, current_hard_rlimits
from kukeon.runtime.containerd.tasks import TaskIO
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd, clean_namespace

pytestmark = pytest.mark.integration


async def test_purge_removes_a_namespace_that_holds_everything(
    containerd_daemon: PrivateContainerd,
    containerd_client: ContainerdClient,
    containerd_test_image: BusyboxImage,
    tmp_path: Path,
) -> None:
    client = containerd_client
    name = f"kp-{secrets.token_hex(4)}.kukeon.io"
    cgroup_parent = f"kukeon-purge-test-{secrets.token_hex(3)}"
    # The directories a task leaves per namespace: runc's (host-wide) and the work
    # directories' parent under containerd's root. Another namespace's empty ones stay.
    parents = (RUNC_ROOT, containerd_daemon.root / TASK_PLUGIN_DIR)
    other = f"kp-{secrets.token_hex(4)}.kukeon.io"
    for parent in parents:
        (parent / other).mkdir(parents=True)
    await client.namespaces.ensure(name)
    try:
        # An imported (and unpacked) image: blobs and committed snapshots.
        [image] = await client.images(name).import_archive(containerd_test_image.archive)
        # A running task of a container with its own active snapshot.
        spec = build_runtime_spec(
            ContainerSpec(id="c1", image=image.name, command="sleep", args=["3600"]),
            context=SpecContext(
                image_config=await client.images(name).config(image.name),
                container_id="c1",
                hostname="c1",
                cgroups_path=f"/{cgroup_parent}/c1",
                host_hard_rlimits=current_hard_rlimits(),
            ),
        )
        await client.containers(name).create("c1", image=image.name, spec=spec)
        tasks = client.tasks(name)
        await tasks.create("c1", io=TaskIO.log_file(tmp_path / "c1.log"))
        await tasks.start("c1")
        # A lease held by an interrupted import, a blob nothing references, a lone snapshot.
        await client.leases(name).create(expire_after=timedelta(hours=1))
        await client.content(name).write_bytes(b"orphan blob " + secrets.token_bytes(8))
        await client.snapshots(name).prepare(f"lone-{secrets.token_hex(2)}")

        assert all((parent / name).is_dir() for parent in parents)

        assert await client.namespaces.purge(name) is True
        assert name not in {ns.name for ns in await client.namespaces.list()}
        assert [parent / name for parent in parents if (parent / name).exists()] == []
        assert all((parent / other).is_dir() for parent in parents)
        assert await client.namespaces.purge(name) is False  # already gone
        assert all((parent / other).is_dir() for parent in parents)
    finally:
        await clean_namespace(client, name)
        remove_cgroup(cgroup_parent)
        for parent in parents:
            with contextlib.suppress(OSError):
                (parent / other).rmdir()


async def test_a_purge_cut_after_the_delete_removes_the_directories_when_run_again(
    containerd_daemon: PrivateContainerd, containerd_client: ContainerdClient
) -> None:
    """kukeond killed between containerd's delete and the rmdir: the realm's finalizer
    purges again, finds no namespace, and removes what is left of it (empty only)."""
    name = f"kp-{secrets.token_hex(4)}.kukeon.io"
    parents = (RUNC_ROOT, containerd_daemon.root / TASK_PLUGIN_DIR)
    for parent in parents:
        (parent / name).mkdir(parents=True)
    (parents[1] / name / "busy").mkdir()  # something containerd still holds: kept
    try:
        assert await containerd_client.namespaces.purge(name) is False
        assert not (RUNC_ROOT / name).exists()
        assert (parents[1] / name / "busy").is_dir()
    finally:
        for path in (RUNC_ROOT / name, parents[1] / name / "busy", parents[1] / name):
            with contextlib.suppress(OSError):
                path.rmdir()


def remove_cgroup(name: str) -> None:
    """runc removed the task's own leaf; the parent it made goes here, in every hierarchy."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for path in (hierarchy / name / "c1", hierarchy / name):
            with contextlib.suppress(OSError):
                path.rmdir()
