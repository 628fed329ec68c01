"""The cell controller's pure decisions: restart policy, cell state, naming, spec digest."""

from datetime import UTC, datetime, timedelta

import pytest

from kukeon.api import CellState
from kukeon.controllers.cellstate import (
    ContainerObservation,
    containerd_container_id,
    derive_cell_state,
    restart_due_at,
    restart_owed,
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


def test_restart_backoff_defaults_to_thirty_seconds() -> None:
    finished = datetime(2026, 1, 1, tzinfo=UTC)
    assert restart_due_at(finished_at=finished, backoff_seconds=None) == finished + timedelta(
        seconds=30
    )
    assert restart_due_at(finished_at=finished, backoff_seconds=1) == finished + timedelta(
        seconds=1
    )


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
