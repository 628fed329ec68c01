"""The verdicts of the probe fields (``field_effects`` merges them): each path with the test
that proves its effect, the same for the startup, readiness and liveness probe."""

from __future__ import annotations

_UNIT = "tests/unit/controllers/test_probing.py"
_PLAN = "tests/unit/controllers/test_probe_plan.py"
_IT = "tests/integration/controllers/test_probes.py"

_FOLLOWS = "test_readiness_follows_the_server_and_each_change_requeues_the_cell"
_STOPS = "test_liveness_failing_stops_the_task_with_its_reason"

_BY_FIELD = {
    "exec.command": f"{_IT}::test_exec_readiness_gates_ready_without_restarts",
    "httpGet.path": f"{_UNIT}::test_https_path_and_headers_are_what_the_probe_sends",
    "httpGet.port": f"{_IT}::test_a_startup_probe_keeps_liveness_from_killing_a_slow_starter",
    "httpGet.scheme": f"{_UNIT}::test_https_path_and_headers_are_what_the_probe_sends",
    "httpGet.httpHeaders[].name": f"{_UNIT}::test_https_path_and_headers_are_what_the_probe_sends",
    "httpGet.httpHeaders[].value": f"{_UNIT}::test_https_path_and_headers_are_what_the_probe_sends",
    "tcpSocket.port": f"{_IT}::test_tcp_socket_probes_on_the_bridge_and_on_the_host_network",
    "initialDelaySeconds": f"{_UNIT}::test_success_threshold_and_initial_delay",
    "periodSeconds": f"{_IT}::test_exec_readiness_gates_ready_without_restarts",
    "timeoutSeconds": f"{_UNIT}::test_an_answer_slower_than_timeout_seconds_fails",
    "successThreshold": f"{_UNIT}::test_success_threshold_and_initial_delay",
    "failureThreshold": f"{_UNIT}::{_FOLLOWS}",
    "terminationGracePeriodSeconds": f"{_UNIT}::{_STOPS}",
}

PROBE_EFFECTS: dict[str, str] = {
    f"Cell.spec.containers[].{probe}.{name}": test
    for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    for name, test in _BY_FIELD.items()
}
"""Path -> the test proving the field's effect (for the three probes alike: one code path)."""

PROBE_STATUS_FIELDS: tuple[str, ...] = (
    "Cell.status.containers[].started",
    "Cell.status.containers[].ready",
    "Cell.status.containers[].probes[].probe",
    "Cell.status.containers[].probes[].result",
    "Cell.status.containers[].probes[].message",
    "Cell.status.containers[].probes[].consecutiveFailures",
    "Cell.status.containers[].probes[].lastTransitionTime",
)
