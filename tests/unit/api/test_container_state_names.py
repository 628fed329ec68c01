"""A container's state says where its run stands, its `ready` whether it serves: the state
that runs is `Running`, no longer `Ready` (a row read `Ready` beside READY `false`).
Documents written before still load, their `Ready` read as `Running`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kukeon.api import ContainerState, ContainerStatus
from kukeon.cli.output import describe
from tests.unit.cli.test_output import NOW, _cell


@pytest.mark.parametrize("stored", ["Ready", "Running", 1])
def test_a_running_container_is_running_however_it_was_stored(stored: object) -> None:
    status = ContainerStatus.model_validate({"id": "app", "state": stored, "pid": 7})
    assert status.state is ContainerState.RUNNING
    assert status.model_dump(mode="json", by_alias=True)["state"] == "Running"


def test_an_unknown_state_is_still_kept_as_written() -> None:
    status = ContainerStatus.model_validate({"id": "app", "state": "Hibernating"})
    assert status.model_dump(mode="json", by_alias=True)["state"] == "Hibernating"
    assert status.state != ContainerState.RUNNING


def test_a_running_container_that_is_not_ready_says_both_apart() -> None:
    containers = [{"id": "app", "state": "Ready", "pid": 7, "ready": False}]
    cell = _cell("web", age=timedelta(minutes=1), containers=containers, state="Pending")
    page = describe(cell, now=NOW)
    rows = page.rsplit("\nContainers:\n", 1)[1].splitlines()
    assert rows[0].split()[:3] == ["ID", "STATE", "READY"]
    assert rows[1].split()[:3] == ["app", "Running", "false"]
