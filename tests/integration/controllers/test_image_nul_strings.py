"""An image whose config or /etc/passwd puts a NUL byte in the process fails its cell for good
as InvalidSpec naming the field.

No process can be given a NUL (execve takes C strings). An image author's `Env`,
`WorkingDir`, `Cmd` or passwd home directory holding one reached runc, whose create failed:
an UnexpectedError retried for ever (for `WorkingDir`, the Event saying it could not even
be written: 'must not contain a NUL character').
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, get_cell
from .test_image_config import import_derived

pytestmark = pytest.mark.integration

FIRST_RETRY_SECONDS = 0.1
QUIET_SECONDS = 1.0
NUL_HOME = b"nul:x:1000:1000::/home\x00x:/bin/sh\n"
CASES: dict[str, tuple[dict[str, Any], dict[str, bytes], dict[str, Any], str]] = {
    "env": ({"Env": ["X=a\x00b"]}, {}, {}, "image config Env: the image's variable 'X' holds"),
    "wd": ({"WorkingDir": "/a\x00b"}, {}, {}, "image config WorkingDir: "),
    "cmd": ({"Cmd": ["sh", "-c\x00"]}, {}, {"command": None, "args": None}, "image config Cmd: "),
    "home": ({}, {"/etc/passwd": NUL_HOME}, {"user": "nul"}, "user: the user's home directory"),
    "noname": ({"Env": ["=x"]}, {}, {}, "image config Env: an entry has no name ('=x')"),
}


@pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)
async def test_a_nul_byte_from_the_image_fails_the_cell_naming_the_field(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()

    async def refused(
        name: str,
        config: dict[str, Any],
        files: dict[str, bytes],
        fields: dict[str, Any],
        words: str,
    ) -> None:
        image = f"kukeon.io/test/nul-{name}:1"
        await import_derived(k, tmp_path, image, config=config, files=files)
        app = {"id": "app", "image": image, "command": "sh", "args": ["-c", SLEEPER_SCRIPT]}
        app.update(fields)
        await k.apply(cell_doc(k, name, [{f: v for f, v in app.items() if v is not None}]))
        key = cell_key(k, name)
        failed = await k.wait_for(Kind.CELL, key, state="Failed", within=30)
        assert isinstance(failed, Cell)
        message = failed.status.message or ""
        assert failed.status.reason == "InvalidSpec", message
        assert f"container 'app': {words}" in message, message
        assert "NUL byte" in message or "no name" in message, message
        await asyncio.sleep(QUIET_SECONDS)  # for good: no retry rewrites the status
        again = await get_cell(k, key)
        assert again.metadata.resource_version == failed.metadata.resource_version

    await asyncio.gather(*(refused(name, *case) for name, case in CASES.items()))
