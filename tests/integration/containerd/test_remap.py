"""A container in a user namespace on a remapped snapshot, on a real containerd 1.6 + runc.

The spec builder does not make user namespaces yet (no cell field asks for one): the test
adds the namespace and its mappings to the spec itself, to prove the runtime half works
(the rootfs shifted to the range, root inside is the range's base outside) and to find what
runc 1.1 does with kukeon's standard mounts in a user namespace.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.runtime.containerd import TaskIO, kukeon_labels
from kukeon.runtime.containerd.crilog import plain_text
from kukeon.runtime.containerd.remap import (
    LABEL_REMAPPED_FROM,
    Remap,
    remapped_name,
    shifted,
)
from kukeon.runtime.idranges import IdRange
from tests.fixtures.containerd import PrivateContainerd, searchable_containerd
from tests.integration.containerd.helpers import Runner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def containerd_daemon() -> Iterator[PrivateContainerd]:
    """A containerd whose state a user namespace's root can reach (``searchable_containerd``)."""
    with searchable_containerd() as daemon:
        yield daemon


RANGE = IdRange(0x71230000)
"""Above the default pool and below systemd's foreign range: no host account has it."""


def in_user_namespace(spec: dict[str, Any], idrange: IdRange) -> dict[str, Any]:
    linux = spec["linux"]
    linux["namespaces"] = [*linux["namespaces"], {"type": "user"}]
    linux["uidMappings"] = idrange.oci_mappings()
    linux["gidMappings"] = idrange.oci_mappings()
    return spec


def status_ids(pid: int, field: str) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no {field} line")


async def test_root_inside_is_the_ranges_base_outside_on_a_shifted_rootfs(
    runner: Runner, tmp_path: Path
) -> None:
    client, namespace = runner.client, runner.namespace
    container_id = f"userns-{secrets.token_hex(3)}"
    spec = await runner.spec(
        {"command": "sh", "args": ["-c", "id -u; id -g; stat -c '%u %g' /bin/busybox; sleep 30"]},
        container_id=container_id,
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    containers = client.containers(namespace)
    await containers.create(
        container_id,
        image=runner.image,
        spec=in_user_namespace(spec, RANGE),
        labels=kukeon_labels(
            realm="test", space="space", stack="stack", cell="cell", container="u"
        ),
        remap=Remap(RANGE, scratch),
    )
    log = runner.log_dir / f"{container_id}.log"
    tasks = client.tasks(namespace)
    pid = await tasks.create(container_id, io=TaskIO.log_file(log))
    await tasks.start(container_id)
    for _ in range(100):
        text = plain_text(await asyncio.to_thread(log.read_bytes)) if log.exists() else ""
        if len(text.split()) >= 4:
            break
        await asyncio.sleep(0.1)
    assert text.split()[:4] == ["0", "0", "0", "0"], text
    assert status_ids(pid, "Uid") == [RANGE.base] * 4
    assert status_ids(pid, "Gid") == [RANGE.base] * 4
    busybox = os.lstat(f"/proc/{pid}/root/bin/busybox")
    assert (busybox.st_uid, busybox.st_gid) == (RANGE.base, RANGE.base)
    assert os.stat(f"/proc/{pid}/root/").st_uid == RANGE.base
    assert list(await asyncio.to_thread(os.listdir, scratch)) == []  # mount point removed

    snapshots = client.snapshots(namespace)
    record = await containers.get(container_id)
    rootfs = await snapshots.stat(record.snapshot_key)
    remapped = await snapshots.stat(rootfs.parent)
    assert remapped.name == remapped_name(remapped.labels[LABEL_REMAPPED_FROM], RANGE)

    await tasks.kill(container_id, signal=9)
    await tasks.wait(container_id)
    await tasks.delete(container_id)
    await containers.delete(container_id)
    # containerd collects the remapped snapshot once no container is prepared on it.
    leases = client.leases(namespace)
    await leases.delete((await leases.create()).id, sync=True)
    assert not await snapshots.exists(remapped.name)


def test_the_shift_is_idempotent_and_never_leaves_the_range() -> None:
    assert shifted(0, RANGE) == RANGE.base
    assert shifted(1000, RANGE) == RANGE.base + 1000
    assert shifted(RANGE.base + 5, RANGE) == RANGE.base + 5
    assert shifted(shifted(65535, RANGE), RANGE) == RANGE.last
    assert shifted(70000, RANGE) == RANGE.base + 65534
    assert shifted(RANGE.last + 1, RANGE) == RANGE.base + 65534
