"""Ids runc cannot run as, given by a container's `user` or by its image's /etc/passwd and
/etc/group, fail the cell for good as InvalidSpec naming `user`.

runc takes uids and gids in 0-2147483647 only. A larger one (`user: 4294967294`, which the
API accepted) or one an image author wrote into the image's files (-1, 4294967295,
99999999999) reached runc, whose create failed: an UnexpectedError, retried for ever with an
error and its traceback in kukeond's log at each try. The image's files are the image
author's: what they say is checked on the node, where the image is read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, get_cell
from .test_image_config import import_image, init_facts

pytestmark = pytest.mark.integration

FIRST_RETRY_SECONDS = 0.1
QUIET_SECONDS = 1.0
PASSWD = (
    b"max:x:4294967295:0::/:/bin/sh\n"
    b"neg:x:-1:0::/:/bin/sh\n"
    b"big:x:99999999999:0::/:/bin/sh\n"
    b"member:x:1000:1000::/:/bin/sh\n"
)
GROUP = b"member:x:1000:\nhuge:x:4294967295:member\n"
REFUSED = {
    "max": "'max' has uid 4294967295 in the image's /etc/passwd",
    "neg": "'neg' has uid -1 in the image's /etc/passwd",
    "big": "'big' has uid 99999999999 in the image's /etc/passwd",
    "member": "'huge' has gid 4294967295 in the image's /etc/group",
}


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)
async def test_ids_runc_refuses_fail_the_cell_naming_user(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    image = await import_image(
        k, tmp_path, "kukeon.io/test/ids:1", files={"/etc/passwd": PASSWD, "/etc/group": GROUP}
    )

    def sleeper(user: str) -> dict[str, str | list[str]]:
        return {
            "id": "app",
            "image": image,
            "command": "sh",
            "args": ["-c", SLEEPER_SCRIPT],
            "user": user,
        }

    async def refused(name: str, user: str, words: str) -> None:
        key = cell_key(k, name)
        await k.apply(cell_doc(k, name, [sleeper(user)]))
        failed = await k.wait_for(Kind.CELL, key, state="Failed", within=30)
        assert isinstance(failed, Cell)
        message = failed.status.message or ""
        assert failed.status.reason == "InvalidSpec", message
        assert "container 'app': user: " in message, message
        assert words in message, message
        # For good: no retry rewrites the status while the spec stays the same.
        await asyncio.sleep(QUIET_SECONDS)
        again = await get_cell(k, key)
        assert again.metadata.resource_version == failed.metadata.resource_version

    cases = [(name, name, words) for name, words in REFUSED.items()]
    # Stored as a document written before the API knew runc's bound.
    cases.append(("over", "4294967294", "id 4294967294 is out of range (at most 2147483647)"))
    await asyncio.gather(*(refused(*case) for case in cases))

    # runc's highest id runs.
    await k.apply(cell_doc(k, "top", [sleeper("2147483647:2147483647")]))
    await k.wait_for(Kind.CELL, cell_key(k, "top"), state="Ready", within=30)
    status, _ = await init_facts(k, "s1_st1_top_app")
    assert status["Uid"].split()[0] == status["Gid"].split()[0] == "2147483647"
