"""nestedCgroupRuntime for real: a runtime inside a nested cell creates cgroups and its limits
hold; a cell without it cannot create a cgroup; a container the host cannot delegate to
safely is refused, saying why.

The inner runtime is the host's own ``runc``, bind-mounted read-only with the libraries
``ldd`` lists, running a busybox bundle the test writes into a host directory the cell
mounts at ``/nest``. What the inner side does is what any runtime in a nested cell must do
(see docs/nested-cgroups.md): on cgroup v2 move its own processes out of the namespace root into a
leaf, then enable the controllers in the root's ``cgroup.subtree_control``; on v1 nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import AnyResource, Cell, Kind
from kukeon.runtime.cgroups import CgroupNesting
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in

pytestmark = pytest.mark.integration

RUNC = Path("/usr/sbin/runc")
BUSYBOX = Path("/bin/busybox")
INNER_LIMIT = 32 * 1024 * 1024

# On cgroup v2 the container's own processes sit in the root of its cgroup namespace, and
# a cgroup holding processes cannot enable controllers for its children ("no internal
# processes"): move them into a leaf first, as systemd and docker-in-docker entrypoints do.
V2_PREPARE = """
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  for p in $(cat /sys/fs/cgroup/cgroup.procs); do
    echo $p > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null
  done
  for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo +$c > /sys/fs/cgroup/cgroup.subtree_control
  done
fi
"""
READ_LIMIT = (
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
)
HOG = "dd if=/dev/zero of=/dev/null bs=64M count=4"


def _runc_volumes() -> list[dict[str, Any]]:
    """runc and every library it loads, read-only at the same paths."""
    if not RUNC.exists():
        pytest.skip(f"{RUNC} is not installed")
    listing = subprocess.run(["ldd", str(RUNC)], capture_output=True, text=True, check=False)
    paths = [str(RUNC)]
    if listing.returncode == 0:  # "not a dynamic executable": a static runc needs nothing
        paths += re.findall(r"(/\S+) \(0x", listing.stdout)
    return [{"source": os.path.realpath(path), "target": path, "readOnly": True} for path in paths]


def _bundle(directory: Path, name: str, script: str, *, memory: int) -> None:
    """An OCI bundle running ``script`` under busybox sh with a memory limit."""
    bundle = directory / name
    rootfs = bundle / "rootfs"
    for sub in ("bin", "proc", "dev", "sys", "tmp"):
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in ("sh", "cat", "dd"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    config = {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", script],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": name,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "cgroupsPath": f"/{name}",
            "resources": {
                "memory": {"limit": memory},
                "devices": [{"allow": False, "access": "rwm"}],
            },
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
            ],
        },
    }
    (bundle / "config.json").write_text(json.dumps(config))


def _nesting(k: Kukeond) -> CgroupNesting:
    """What this host's cgroup driver says about delegating a container's own cgroup."""
    controllers = k.daemon.controllers
    assert controllers is not None
    return controllers.host.cgroups.nesting()


def _failed(cell: AnyResource) -> bool:
    assert isinstance(cell, Cell)
    return cell.status.state == "Failed"


async def test_runc_in_a_nested_cell_enforces_its_memory_limit(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    nest = tmp_path / "nest"
    nest.mkdir()
    _bundle(nest, "limit", READ_LIMIT, memory=INNER_LIMIT)
    _bundle(nest, "hog", HOG, memory=16 * 1024 * 1024)
    nesting = _nesting(k)
    app = container(
        k,
        "app",
        # the host cannot guard an unprivileged container's own limits on v1 (see below)
        privileged=not nesting.guarded,
        volumes=[*_runc_volumes(), {"source": str(nest), "target": "/nest"}],
    )
    key = cell_key(k, "nested")
    await k.apply(cell_doc(k, "nested", [app], nestedCgroupRuntime=True))
    cell = await k.wait_for(Kind.CELL, key, state="Ready", within=90)
    assert isinstance(cell, Cell)
    assert {"memory", "pids"} <= set(cell.status.subtree_controllers)

    cid = cell.status.containers[0].name
    assert cid is not None
    # its cgroup namespace: the container sees its own cgroup as the root
    code, own = await exec_in(k, cid, "cat", "/proc/self/cgroup")
    assert code == 0
    assert all(line.endswith(":/") for line in own.split()), own

    script = (
        V2_PREPARE
        + "runc --root /nest/state run --bundle /nest/limit limit; echo limit-rc=$?;"
        + "runc --root /nest/state run --bundle /nest/hog hog; echo hog-rc=$?"
    )
    code, output = await exec_in(k, cid, "sh", "-c", script, within=120)
    assert code == 0, output
    assert "limit-rc=0" in output, output
    assert str(INNER_LIMIT) in output.split(), output
    # the allocation above the inner limit is OOM-killed: SIGKILL, 128 + 9
    assert "hog-rc=137" in output, output


async def test_a_cell_without_it_cannot_create_a_cgroup(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "plain")
    await k.apply(cell_doc(k, "plain", [container(k, "app")]))
    cell = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(cell, Cell)
    cid = cell.status.containers[0].name
    assert cid is not None
    code, output = await exec_in(
        k,
        cid,
        "sh",
        "-c",
        # v2: the cgroup2 mount itself; v1: a hierarchy (the tmpfs holding them is no cgroup)
        "if [ -f /sys/fs/cgroup/cgroup.controllers ]; then mkdir /sys/fs/cgroup/inner; "
        "else mkdir /sys/fs/cgroup/memory/inner; fi 2>&1",
    )
    assert code != 0
    assert "Read-only file system" in output, output


async def test_an_unprivileged_container_is_refused_where_the_host_cannot_guard_it(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    nesting = _nesting(k)
    key = cell_key(k, "unguarded")
    await k.apply(cell_doc(k, "unguarded", [container(k, "app")], nestedCgroupRuntime=True))
    if nesting.guarded:
        # cgroup2 with nsdelegate: the container may create cgroups, not rewrite its limits
        cell = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
        assert isinstance(cell, Cell)
        cid = cell.status.containers[0].name
        assert cid is not None
        code, output = await exec_in(k, cid, "sh", "-c", "mkdir /sys/fs/cgroup/inner 2>&1")
        assert code == 0, output
        code, output = await exec_in(
            k, cid, "sh", "-c", "echo 1000000 > /sys/fs/cgroup/memory.max 2>&1"
        )
        assert code != 0, output
        return
    cell = await k.wait_for(Kind.CELL, key, until=_failed, within=60)
    assert isinstance(cell, Cell)
    assert cell.status.reason == "InvalidSpec"
    message = cell.status.message or ""
    assert "privileged" in message
    assert f"cgroup v{nesting.version}" in message
    assert nesting.risk in message
