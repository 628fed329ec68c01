"""An image author's /etc/passwd linked to the host's: the user is looked up in the image only.

kukeond reads an image's /etc/passwd and /etc/group out of its layers, as root, on the host
(userdb). A symlink there, of the file or of /etc, to /proc/1/root/etc (the host's root as
seen from kukeond), or up past the image's root to /etc/shadow, leads inside the image, as
it does in the running container: the host's files are never read, so a user only the
host has (root by name, in an image without root) is not found.
"""

from __future__ import annotations

import asyncio
import tarfile
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key
from .test_image_config import import_derived

pytestmark = pytest.mark.integration

LINKS = {
    "passwd": {"/etc/passwd": (tarfile.SYMTYPE, "/proc/1/root/etc/passwd")},
    "shadow": {"/etc/passwd": (tarfile.SYMTYPE, "../../../../../../etc/shadow")},
    "etc": {"/etc": (tarfile.SYMTYPE, "../../../../proc/1/root/etc")},
}


async def test_a_passwd_linked_to_the_hosts_is_not_read(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    host_passwd = await asyncio.to_thread(Path("/etc/passwd").read_text)
    assert host_passwd.startswith("root:")  # the host has one
    await k.hierarchy()
    for name, links in LINKS.items():
        image = await import_derived(k, tmp_path, f"kukeon.io/test/link-{name}:1", links=links)
        sleeper = {
            "id": "app",
            "image": image,
            "command": "sh",
            "args": ["-c", SLEEPER_SCRIPT],
            "user": "root",
        }
        await k.apply(cell_doc(k, name, [sleeper]))
    for name in LINKS:
        failed = await k.wait_for(Kind.CELL, cell_key(k, name), state="Failed", within=30)
        assert isinstance(failed, Cell)
        message = failed.status.message or ""
        assert failed.status.reason == "InvalidSpec", message
        assert "user 'root' cannot be resolved: the image has no /etc/passwd" in message, message
