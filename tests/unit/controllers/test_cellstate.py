"""The cell controller's pure decisions: restart policy, cell state, naming, spec digest."""

from datetime import UTC, datetime, timedelta

import pytest

from kukeon.api import CellState
from kukeon.controllers.cellstate import (
    ContainerObservation,
    containerd_container_id,
    crash_loop_restarts,
    derive_cell_state,
    restart_due_at,
    restart_owed,
    restart_pause_seconds,
    spec_digest,
)


def running(cid: str, *, root: bool = False) -> ContainerObservation:
    return ContainerObservation(cid, root=root, running=True, exit_code=None, restart_owed=False)


def exited(cid: str, code: int, *, owed: bool = False, root: bool = False) -> ContainerObservation:
    return ContainerObservation(cid, root=root, running=False, exit_code=code, restart_owed=owed)


def not_started(cid: str, *, root: bool = False) -> ContainerObservation:
    return ContainerObservation(cid, root=root, running=False, exit_code=None, restart_owed=False)


def state(*containers: ContainerObservation, **flags: bool) -> CellState:
    return derive_cell_state(
        containers=list(containers),
        desired_stopped=flags.get("stopped", False),
        build_error=flags.get("failed", False),
        host_unobservable=flags.get("unknown", False),
    )


@pytest.mark.parametrize(
    ("policy", "code", "count", "limit", "owed"),
    [
        ("always", 0, 100, None, True),
        ("always", 1, 0, None, True),
        ("on-failure", 0, 0, None, False),
        ("on-failure", 1, 0, 2, True),
        ("on-failure", 1, 1, 2, True),
        ("on-failure", 1, 2, 2, False),
        ("on-failure", 1, 4, None, True),
        ("on-failure", 1, 5, None, False),
        ("never", 1, 0, None, False),
        (None, 1, 0, None, False),
        ("", 1, 0, None, False),
    ],
)
def test_restart_policy(
    policy: str | None, code: int, count: int, limit: int | None, owed: bool
) -> None:
    assert (
        restart_owed(policy=policy, exit_code=code, restart_count=count, max_retries=limit) is owed
    )


def loop_pauses(runs: list[float], *, backoff: int | None = None) -> list[int]:
    """The pause before each restart of a container whose successive runs (start to exit)
    lasted `runs` seconds, each restarted when due, folded as the planner does: the loop
    count read from the last status, ``backoffRestarts`` written back one higher."""
    pauses: list[int] = []
    stored = 0
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for run in runs:
        finished = start + timedelta(seconds=run)
        loop = crash_loop_restarts(backoff_restarts=stored, started_at=start, finished_at=finished)
        due = restart_due_at(finished_at=finished, backoff_seconds=backoff, loop_restarts=loop)
        pauses.append(int((due - finished).total_seconds()))
        stored, start = loop + 1, due
    return pauses


def test_the_default_backoff_is_kubernetes_crash_loop_backoff() -> None:
    """At once, then 10 s doubling to the 300 s cap (kubelet's CrashLoopBackOff)."""
    assert loop_pauses([0.1] * 9) == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_a_run_of_ten_minutes_ends_the_crash_loop() -> None:
    assert loop_pauses([1, 1, 1, 1, 600, 1, 1]) == [0, 10, 20, 40, 0, 10, 20]
    # Just under ten minutes is still a crash: the loop goes on.
    assert loop_pauses([1, 1, 1, 599.9, 1]) == [0, 10, 20, 40, 80]
    # The first exit of a container restarts at once whatever its run.
    assert loop_pauses([3600, 3600]) == [0, 0]


def test_an_explicit_backoff_is_a_fixed_pause_before_every_restart() -> None:
    assert loop_pauses([0.1] * 8, backoff=5) == [5] * 8
    assert loop_pauses([1, 600, 1], backoff=1) == [1, 1, 1]
    assert loop_pauses([1, 1], backoff=300) == [300, 300]


def test_the_loop_count_never_overflows_the_pause() -> None:
    for count in (6, 7, 64, 10**6, 2**63 - 1):
        assert restart_pause_seconds(backoff_seconds=None, loop_restarts=count) == 300
    assert restart_pause_seconds(backoff_seconds=None, loop_restarts=-3) == 0


def test_a_run_of_unknown_length_is_counted_short() -> None:
    """No start time (never written): never a reset by accident, the loop goes on."""
    finished = datetime(2026, 1, 1, tzinfo=UTC)
    assert crash_loop_restarts(backoff_restarts=4, started_at=None, finished_at=finished) == 4
    later = finished + timedelta(hours=1)  # a clock that went back: a short run
    assert crash_loop_restarts(backoff_restarts=4, started_at=later, finished_at=finished) == 4


def test_all_running_is_ready() -> None:
    assert state(running("a", root=True), running("b")) is CellState.READY


def test_nothing_started_yet_is_pending() -> None:
    assert state() is CellState.PENDING
    assert state(running("a", root=True), not_started("b")) is CellState.PENDING


def test_restart_owed_is_degraded() -> None:
    assert state(exited("a", 1, owed=True, root=True)) is CellState.DEGRADED
    assert state(running("a", root=True), exited("b", 1, owed=True)) is CellState.DEGRADED


def test_sidecar_done_while_root_runs_is_degraded() -> None:
    assert state(running("a", root=True), exited("b", 0)) is CellState.DEGRADED


def test_all_exited_zero_is_exited() -> None:
    assert state(exited("a", 0, root=True), exited("b", 0)) is CellState.EXITED


def test_nonzero_exit_without_restart_is_error() -> None:
    assert state(exited("a", 1, root=True)) is CellState.ERROR
    assert state(running("a", root=True), exited("b", 2)) is CellState.ERROR


def test_flags_override_observations() -> None:
    assert state(running("a"), unknown=True) is CellState.UNKNOWN
    assert state(running("a"), failed=True) is CellState.FAILED
    assert state(running("a"), stopped=True) is CellState.STOPPED


def test_containerd_names_follow_kukeon() -> None:
    assert containerd_container_id(space="s", stack="st", cell="c", container="web") == "s_st_c_web"


def test_spec_digest_is_stable_and_sensitive() -> None:
    spec = {"process": {"args": ["sh"]}, "root": {"path": "rootfs"}}
    reordered = {"root": {"path": "rootfs"}, "process": {"args": ["sh"]}}
    assert spec_digest(spec, image="busybox") == spec_digest(reordered, image="busybox")
    assert spec_digest(spec, image="busybox") != spec_digest(spec, image="busybox:2")
