"""The pure decisions of the cell controller: restart policy, cell state, naming, spec digest.

The cell controller observes containerd and then has to decide three things: is a restart
owed to this container (and when: a fixed pause, or Kubernetes' CrashLoopBackOff), what
state is the cell in, and has a container's effective spec changed since it was created.
Kept free of I/O so every rule is unit-tested without a host, and so the controller itself
reads as "observe, decide, act".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kukeon.api import CellState
from kukeon.api.container import RESTART_BACKOFF_MAX, RESTART_BACKOFF_MIN
from kukeon.api.container import containerd_container_id as containerd_container_id

DEFAULT_RESTART_MAX_RETRIES = 5
CRASH_LOOP_INITIAL_SECONDS = 10
"""The pause before the second restart in a row after short runs (kubelet's initial
back-off); each further one doubles it up to `RESTART_BACKOFF_MAX`."""
CRASH_LOOP_RESET = timedelta(minutes=10)
"""A run at least this long (start to finish) ends a crash loop: the next restart is at
once again (kubelet's reset after 10 minutes without a crash)."""
_CRASH_LOOP_DOUBLINGS = (RESTART_BACKOFF_MAX // CRASH_LOOP_INITIAL_SECONDS).bit_length()
"""Doublings past which the pause is the cap anyway: the exponent never grows with the count."""


def restart_owed(
    *, policy: str | None, exit_code: int, restart_count: int, max_retries: int | None
) -> bool:
    """Whether a container that exited with `exit_code` is to be started again.

    `always` restarts after any exit, `on-failure` after a non-zero exit while fewer than
    `restartMaxRetries` restarts were made, `never` or no policy never.
    """
    if policy == "always":
        return True
    if policy == "on-failure":
        limit = DEFAULT_RESTART_MAX_RETRIES if max_retries is None else max_retries
        return exit_code != 0 and restart_count < limit
    return False


def crash_loop_restarts(
    *, backoff_restarts: int, started_at: datetime | None, finished_at: datetime
) -> int:
    """How many restarts the exit at `finished_at` follows in its crash loop.

    `backoff_restarts` is what the container's status holds (``backoffRestarts``: the
    restarts made since the last long run, 0 in a document written before it existed). A
    run of `CRASH_LOOP_RESET` or more from `started_at` to `finished_at` ends the loop: 0.
    A run of unknown length (no start time) is counted short: never a reset by accident.
    """
    if started_at is not None and finished_at - started_at >= CRASH_LOOP_RESET:
        return 0
    return max(backoff_restarts, 0)


def restart_pause_seconds(*, backoff_seconds: int | None, loop_restarts: int) -> int:
    """The pause before the next restart.

    An explicit `restartBackoffSeconds` is a fixed pause before every restart, kept within
    the model's bounds (1 to 300 s) even for a document stored before they were enforced:
    never a hot loop, never a timer that overflows. Unset, Kubernetes' CrashLoopBackOff:
    the first restart of a loop at once (still one reconcile later: one restart per exit,
    never a hot loop), then 10 s doubling for each restart in a row (`loop_restarts`) to
    the 300 s cap.
    """
    if backoff_seconds is not None:
        return min(max(backoff_seconds, RESTART_BACKOFF_MIN), RESTART_BACKOFF_MAX)
    if loop_restarts <= 0:
        return 0
    doublings = min(loop_restarts - 1, _CRASH_LOOP_DOUBLINGS)
    return min(CRASH_LOOP_INITIAL_SECONDS << doublings, RESTART_BACKOFF_MAX)


def restart_due_at(
    *, finished_at: datetime, backoff_seconds: int | None, loop_restarts: int = 0
) -> datetime:
    """The earliest time the next restart may happen (see `restart_pause_seconds`)."""
    pause = restart_pause_seconds(backoff_seconds=backoff_seconds, loop_restarts=loop_restarts)
    return finished_at + timedelta(seconds=pause)


def due_text(due: datetime) -> str:
    """``2026-12-05T05:18:13Z``: a restart's due time as a status message shows it, rounded
    up to the second, so the restart is never before the time shown."""
    shown = due.astimezone(UTC)
    if shown.microsecond:
        shown = shown.replace(microsecond=0) + timedelta(seconds=1)
    return shown.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ContainerObservation:
    """What the controller saw of one container of a cell, after acting on it."""

    container_id: str
    root: bool
    running: bool
    exit_code: int | None
    """Set when the container's task has exited and was not started again."""
    restart_owed: bool
    ready: bool = True
    """Its readiness (and startup) probes pass, or it has none; meaningful while running."""


def derive_cell_state(
    *,
    containers: list[ContainerObservation],
    desired_stopped: bool,
    build_error: bool,
    host_unobservable: bool,
    ready_observed: bool = False,
) -> CellState:
    """The cell's state from what was observed of its containers (see docs/cells.md)."""
    if host_unobservable:
        return CellState.UNKNOWN
    if build_error:
        return CellState.FAILED
    if desired_stopped:
        return CellState.STOPPED
    if containers and all(c.running for c in containers):
        if all(c.ready for c in containers):
            return CellState.READY
        # Every task runs, a probe does not pass yet (or no longer): not Ready, nothing to
        # restart. Pending until the cell was first Ready, then Degraded.
        return CellState.DEGRADED if ready_observed else CellState.PENDING
    exited = [c for c in containers if not c.running and c.exit_code is not None]
    if any(c.exit_code != 0 and not c.restart_owed for c in exited):
        return CellState.ERROR
    if any(c.restart_owed for c in exited):
        return CellState.DEGRADED
    if exited and any(c.running for c in containers):
        return CellState.DEGRADED
    if exited and len(exited) == len(containers):
        return CellState.EXITED
    # Nothing exited for good and something is not started yet: still being built.
    return CellState.PENDING


def spec_digest(runtime_spec: dict[str, Any], *, image: str) -> str:
    """A short stable digest of what a container was created from.

    Stored as a container label; when the digest of the spec the controller would build now
    differs, the container is recreated, and only that one.
    """
    canonical = json.dumps({"image": image, "spec": runtime_spec}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
