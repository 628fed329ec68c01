"""What the probes change in the cell controller's plan: started, ready, the cell's state,
and the reason of an exit a probe caused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from kukeon.api import CellState, ContainerSpec, ContainerState
from kukeon.api.probes import ProbeKind, ProbeResult, ProbeStatus
from kukeon.controllers.cellplan import (
    ContainerInputs,
    ContainerPlan,
    ObservedTask,
    ProbeKill,
    ProbeView,
    StartTask,
    plan_cell,
    plan_container,
)
from kukeon.runtime.containerd.tasks import TaskStatus

from .test_cellplan import NAME, T0, cell, kept, plan, ran, stopped_task

HTTP = {"httpGet": {"port": 8080, "path": "/healthz"}, "periodSeconds": 1}


def probed(**probes: Any) -> ContainerSpec:
    fields: dict[str, Any] = {"id": "app", "image": "busybox", **probes}
    return ContainerSpec.model_validate(fields)


def running_task(pid: int = 100) -> ObservedTask:
    return ObservedTask(TaskStatus.RUNNING, pid=pid)


def test_without_probes_a_running_container_is_started_and_ready() -> None:
    result = plan(probed(), previous=ran(), container=kept(), task=running_task())
    assert result.status.started
    assert result.status.ready
    assert result.status.probes == []
    assert result.observation.ready


def test_a_new_task_with_a_readiness_probe_is_not_ready_until_probed() -> None:
    result = plan(probed(readinessProbe=HTTP), previous=None, container=None, task=None)
    assert isinstance(result.actions[-1], StartTask)
    assert result.status.started
    assert not result.status.ready
    assert [p.probe for p in result.status.probes] == [ProbeKind.READINESS]
    assert result.status.probes[0].result == ProbeResult.UNKNOWN


def test_a_startup_probe_holds_started_and_ready() -> None:
    result = plan(
        probed(startupProbe=HTTP, readinessProbe=HTTP), previous=None, container=None, task=None
    )
    assert not result.status.started
    assert not result.status.ready


def test_the_probes_view_of_the_running_pid_is_reported() -> None:
    view = ProbeView(
        pid=100,
        started=True,
        ready=True,
        probes=(ProbeStatus(probe=ProbeKind.READINESS, result=ProbeResult.SUCCESS),),
    )
    spec = probed(readinessProbe=HTTP)
    result = plan_container_with(spec, view=view)
    assert result.status.ready
    assert result.observation.ready
    # A view of another task (an older pid) is not this task's.
    stale = plan_container_with(spec, view=ProbeView(pid=99, started=True, ready=True, probes=()))
    assert not stale.status.ready


def plan_container_with(
    spec: ContainerSpec,
    *,
    view: ProbeView | None = None,
    task: ObservedTask | None = None,
    kill: ProbeKill | None = None,
) -> ContainerPlan:
    """Plan one container of a cell that ran before, its task `task` (running by default)."""
    return plan_container(
        ContainerInputs(
            spec=spec,
            name=NAME,
            root=True,
            digest="d1",
            restarted_at="",
            previous=ran(),
            container=kept(),
            task=task or running_task(),
            now=T0,
            probes=view,
            probe_kill=kill,
        )
    )


@pytest.mark.parametrize("ready_observed", [False, True])
def test_a_cell_whose_tasks_run_but_one_is_not_ready_is_not_ready(ready_observed: bool) -> None:
    spec = probed(readinessProbe=HTTP)
    failing = ProbeView(
        pid=100,
        started=True,
        ready=False,
        probes=(
            ProbeStatus(probe=ProbeKind.READINESS, result=ProbeResult.FAILURE, message="HTTP 503"),
        ),
    )
    app = plan_container_with(spec, view=failing)
    side = plan_container_with(probed().model_copy(update={"id": "side"}), view=None)
    result = plan_cell(cell(ready_observed=ready_observed), [app, side])
    assert result.state == (CellState.DEGRADED if ready_observed else CellState.PENDING)
    assert result.ready_observed == ready_observed
    assert result.not_ready == "container app: readiness probe failed: HTTP 503"


def test_an_exit_a_liveness_probe_caused_has_its_reason() -> None:
    spec = probed(livenessProbe=HTTP)
    kill = ProbeKill(pid=100, reason="LivenessProbeFailed", message="liveness probe failed: x")
    exited = stopped_task(143, at=T0 - timedelta(seconds=1))
    result = plan_container_with(spec, task=exited, kill=kill)
    assert result.status.state == ContainerState.FAILED
    assert result.status.reason == "LivenessProbeFailed"
    assert result.status.message == "liveness probe failed: x"
    assert not result.status.ready
    # A kill of another task does not name this exit.
    other_kill = ProbeKill(pid=7, reason="LivenessProbeFailed", message="")
    other = plan_container_with(spec, task=exited, kill=other_kill)
    assert other.status.reason == "Error"


@pytest.mark.parametrize(
    ("field", "probe", "words"),
    [
        ("livenessProbe", {**HTTP, "successThreshold": 2}, "successThreshold must be 1"),
        ("startupProbe", {**HTTP, "successThreshold": 3}, "successThreshold must be 1"),
        ("readinessProbe", {**HTTP, "terminationGracePeriodSeconds": 5}, "never stops"),
        ("readinessProbe", {"periodSeconds": 1}, "exactly one of exec, httpGet or tcpSocket"),
        (
            "readinessProbe",
            {"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}},
            "exactly one",
        ),
        ("livenessProbe", {"httpGet": {"port": "http"}}, "named ports are not supported"),
        ("livenessProbe", {"httpGet": {"port": 8080, "host": "10.0.0.1"}}, "host"),
        ("livenessProbe", {"tcpSocket": {"port": 70000}}, "port"),
        ("livenessProbe", {**HTTP, "periodSeconds": 0}, "periodSeconds"),
        ("livenessProbe", {"grpc": {"port": 1}}, "grpc"),
        (
            "readinessProbe",
            {"httpGet": {"port": 1, "httpHeaders": [{"name": "Bad Name", "value": "x"}]}},
            "not an HTTP header name",
        ),
        (
            "readinessProbe",
            {"httpGet": {"port": 1, "httpHeaders": [{"name": "X", "value": "a\r\nB: c"}]}},
            "line breaks",
        ),
    ],
)
def test_probe_validation_names_the_field(field: str, probe: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as raised:
        probed(**{field: probe})
    text = str(raised.value)
    assert field in text
    assert words in text


def test_a_kubernetes_probe_loads_unchanged() -> None:
    spec = probed(
        livenessProbe={
            "httpGet": {
                "path": "/healthz",
                "port": 8080,
                "scheme": "HTTP",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}],
            },
            "initialDelaySeconds": 3,
            "periodSeconds": 3,
            "timeoutSeconds": 2,
            "failureThreshold": 5,
            "terminationGracePeriodSeconds": 20,
        },
        readinessProbe={"tcpSocket": {"port": "8080"}},
        startupProbe={"exec": {"command": ["cat", "/tmp/healthy"]}, "failureThreshold": 30},
    )
    assert list(spec.probes()) == [ProbeKind.STARTUP, ProbeKind.READINESS, ProbeKind.LIVENESS]
    assert spec.readiness_probe is not None
    assert spec.readiness_probe.tcp_socket is not None
    assert spec.readiness_probe.tcp_socket.port == 8080


@pytest.mark.parametrize("policy", ["never", "on-failure"])
def test_a_probe_stop_is_a_failure_even_when_the_process_exits_0(policy: str) -> None:
    """A process that handles SIGTERM and exits 0 was still stopped for failing: on-failure
    restarts it, never leaves it Failed (not Completed) and the cell in Error."""
    spec = ContainerSpec.model_validate(
        {
            "id": "app",
            "image": "busybox",
            "restartPolicy": policy,
            **({"restartBackoffSeconds": 1} if policy != "never" else {}),
            "livenessProbe": HTTP,
        }
    )
    stopped = ProbeKill(pid=100, reason="StartupProbeFailed", message="m")
    result = plan_container_with(
        spec, task=stopped_task(0, at=T0 - timedelta(seconds=5)), kill=stopped
    )
    if policy == "on-failure":
        assert isinstance(result.actions[-1], StartTask)
        assert result.status.restart_count == 1
        assert result.status.last_state is not None
        assert result.status.last_state.reason == "StartupProbeFailed"
    else:
        assert result.status.state == ContainerState.FAILED
        assert result.status.exit_code == 0
        assert plan_cell(cell(), [result]).state == CellState.ERROR
