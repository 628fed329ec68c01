"""Device nodes an image author put in a layer: unpacked (containerd, as root, makes them),
never usable in the container.

A layer may hold a character or block device node with any numbers, such as the node's
/dev/kmsg or its disk. containerd creates them in the snapshot as the image says; the
container's device cgroup (runc's allow-list: null, zero, full, random, urandom, tty, the
pts) is what keeps its root from opening them, and the mknod it might try itself.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from kukeon.api import Kind
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, exec_in
from .test_image_config import import_image

pytestmark = pytest.mark.integration


def _a_disk() -> str:
    """``major:minor`` of one of the node's disks (else of its root filesystem's device)."""
    for entry in sorted(Path("/sys/block").iterdir()):
        if not entry.name.startswith(("loop", "ram", "zram")):
            return (entry / "dev").read_text().strip()
    device = os.stat("/").st_dev
    return f"{os.major(device)}:{os.minor(device)}"


async def test_device_nodes_of_the_image_cannot_be_opened(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    links = {"/x/kmsg": (tarfile.CHRTYPE, "1:11"), "/x/disk": (tarfile.BLKTYPE, _a_disk())}
    image = await import_image(k, tmp_path, "kukeon.io/test/devices:1", links=links)
    app = {"id": "app", "image": image, "command": "sh", "args": ["-c", SLEEPER_SCRIPT]}
    await k.apply(cell_doc(k, "dev", [app]))
    await k.wait_for(Kind.CELL, cell_key(k, "dev"), state="Ready", within=30)
    cid = "s1_st1_dev_app"
    code, listed = await exec_in(k, cid, "stat", "-c", "%F %n", "/x/kmsg", "/x/disk")
    assert code == 0, listed
    # unpacked as the image says
    assert listed.splitlines() == ["character special file /x/kmsg", "block special file /x/disk"]
    for node in ("/x/kmsg", "/x/disk"):
        code, said = await exec_in(k, cid, "head", "-c", "1", node)
        assert code != 0, said
        assert "Operation not permitted" in said, said
    code, said = await exec_in(k, cid, "mknod", "/tmp/disk", "b", *_a_disk().split(":"))
    if code == 0:  # the node may be made (CAP_MKNOD), never opened
        code, said = await exec_in(k, cid, "head", "-c", "1", "/tmp/disk")
    assert code != 0, said
    assert "Operation not permitted" in said, said
