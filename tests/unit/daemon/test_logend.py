"""When a followed log of one container ends (daemon/logend.py): once that container ended
and its restart policy owes it no restart, even while its cell's other containers run."""

from __future__ import annotations

from typing import Any

from kukeon.api import Cell, parse_resource
from kukeon.daemon.logend import container_run_is_over


def _cell(cell_state: str, **side: Any) -> Cell:
    containers = [
        {"id": "main", "image": "i", "restartPolicy": "always"},
        {"id": "side", "image": "i", "restartPolicy": side.pop("policy", "never")},
    ]
    statuses = [{"id": "main", "state": "Running", "pid": 10}, {"id": "side", **side}]
    cell = parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Cell", "metadata": {"name": "c"},
         "spec": {"containers": containers},
         "status": {"state": cell_state, "containers": statuses}}
    )  # fmt: skip
    assert isinstance(cell, Cell)
    return cell


def test_a_container_that_ended_for_good_is_over_while_its_cell_runs() -> None:
    assert container_run_is_over(_cell("Ready", state="Stopped", exitCode=0), "side")
    assert container_run_is_over(_cell("Ready", state="Failed", exitCode=1), "side")
    assert not container_run_is_over(_cell("Ready", state="Stopped", exitCode=0), "main")


def test_a_container_owed_a_restart_is_not_over() -> None:
    assert not container_run_is_over(
        _cell("Ready", state="Stopped", exitCode=0, policy="always"), "side"
    )
    assert not container_run_is_over(
        _cell("Ready", state="Failed", exitCode=1, policy="on-failure"), "side"
    )
    assert container_run_is_over(  # evicted: never restarted, as the kubelet's
        _cell("Ready", state="Failed", exitCode=137, reason="Evicted", policy="always"), "side"
    )
    assert not container_run_is_over(_cell("Ready", state="Running", pid=5), "side")
    assert not container_run_is_over(_cell("Ready", state="Failed"), "side")  # no exit yet


def test_a_cells_run_over_ends_each_container() -> None:
    stopped = _cell("Stopped", state="Stopped", exitCode=0, policy="always")
    assert not container_run_is_over(stopped, "main")  # main still runs: not over
    stopped.status.containers[0] = stopped.status.containers[1].model_copy(update={"id": "main"})
    assert container_run_is_over(stopped, "main")  # stopped by a user: nothing to restart
