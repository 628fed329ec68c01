"""A command runc cannot run, or an image name no registry could serve, fails the cell with a
specific reason and is not retried until the spec changes; fixing the spec recovers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, get_cell, update_cell

pytestmark = pytest.mark.integration


FIRST_RETRY_SECONDS = 0.1
"""kukeond's `retryBackoffInitialSeconds` here (0.5 s by default), so that a failure taken
for a temporary one would be tried again three times within QUIET_SECONDS."""
QUIET_SECONDS = 1.0
retry_soon = pytest.mark.kukeond_config(retry_backoff_initial_seconds=FIRST_RETRY_SECONDS)


async def _fails_for_good(k: Kukeond, name: str, app: dict[str, Any], reason: str) -> Cell:
    key = cell_key(k, name)
    await k.apply(cell_doc(k, name, [{"id": "app", **app}]))
    failed = await k.wait_for(Kind.CELL, key, state="Failed", within=30)
    assert isinstance(failed, Cell)
    assert failed.status.reason == reason, failed.status.message
    # Permanent: no retry loop rewriting the status while the spec stays the same. A
    # failure retried would be at FIRST_RETRY_SECONDS, then 0.2 s and 0.4 s later.
    await asyncio.sleep(QUIET_SECONDS)
    again = await get_cell(k, key)
    assert again.metadata.resource_version == failed.metadata.resource_version
    return failed


UNUSABLE_COMMANDS = [
    ("/nonexistent-binary", None, "CommandNotFound"),
    ("no-such-program-on-path", None, "CommandNotFound"),
    # A path through a file (runc: "not a directory"): was UnexpectedError, retried forever.
    ("/etc/passwd/x", None, "CommandNotFound"),
    ("/etc", None, "CommandNotExecutable"),
    ("/etc/passwd", None, "CommandNotExecutable"),
    # A working directory runc cannot make: likewise.
    ("sleep", "/etc/passwd", "WorkingDirUnusable"),
]


@retry_soon
async def test_unusable_commands_fail_then_recover(kukeond: Kukeond) -> None:
    """Each command in a cell of its own, side by side in one kukeond: one test each took a
    kukeond and the quiet time of `_fails_for_good` to itself."""
    k = kukeond
    await k.hierarchy()

    async def fails_then_recovers(
        name: str, command: str, working_dir: str | None, reason: str
    ) -> None:
        app = {"image": k.image.name, "command": command, "workingDir": working_dir}
        failed = await _fails_for_good(k, name, app, reason)
        message = failed.status.message or ""
        assert "'app'" in message, message
        assert (working_dir or command) in message, message

        key = cell_key(k, name)
        cell = await get_cell(k, key)
        fixed = [
            c.model_copy(update={"command": "sleep", "args": ["60"], "working_dir": None})
            for c in cell.spec.containers
        ]
        await update_cell(k, key, spec={"containers": fixed})
        ready = await k.wait_for(Kind.CELL, key, state="Ready", within=30)
        assert isinstance(ready, Cell)
        assert ready.status.reason is None, (command, ready.status.message)

    await asyncio.gather(
        *(
            fails_then_recovers(f"cmd{index}", command, working_dir, reason)
            for index, (command, working_dir, reason) in enumerate(UNUSABLE_COMMANDS)
        )
    )


@retry_soon
async def test_invalid_image_reference_is_not_retried(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    failed = await _fails_for_good(
        k, "ref", {"image": "../../../:@@@", "command": "true"}, "InvalidImageReference"
    )
    assert "../../../:@@@" in (failed.status.message or "")
