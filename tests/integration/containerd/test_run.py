"""Run containers from the imported test image on a real containerd + runc."""

from __future__ import annotations

import pytest

from tests.integration.containerd.helpers import Runner

pytestmark = pytest.mark.integration


async def test_exit_status_and_both_streams_in_the_log(runner: Runner) -> None:
    status, log = await runner.run_to_exit(
        {"command": "sh", "args": ["-c", "echo out; echo err >&2; exit 3"]}, name="exit"
    )
    assert status.code == 3
    assert status.exited_at is not None
    assert "out" in log.splitlines()
    assert "err" in log.splitlines()
