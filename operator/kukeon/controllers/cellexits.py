"""A container's exit as the cell controller's planner sees it, and the wait that follows.

An exit is read from containerd's task (or from the status, for a task whose shim died);
`cellplan` decides from it whether a restart is owed and when. While the restart waits out
its back-off, the container's status is Kubernetes' ``state.waiting`` beside
``lastState.terminated``: ``Waiting``, reason ``CrashLoopBackOff``, the back-off in its
message and its due time in ``restartTime``, the run that ended in ``lastState``
(`waiting`). The next pass reads that status back as the exit it waits after
(`unfolded`), so every rule that decides from the exit (is it news, its time, the length
of the run) decides the same from either form. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kukeon.api import ContainerState, ContainerStatus, ContainerTerminated
from kukeon.api.containerstatus import CRASH_LOOP_BACK_OFF
from kukeon.api.signals import RTMAX, signal_name

from .cellstate import due_text

TASK_LOST_EXIT_CODE = 137
"""What a task whose shim died is reported as: killed (SIGKILL), reason ``TaskLost``."""

EVICTED = "Evicted"
"""The exit reason of a task stopped for writing past its ephemeral-storage limit
(``ephemeralstorage``), the kubelet's word: never restarted (``restart_owed`` is not
asked), as the kubelet never restarts an evicted pod."""
PROBE_FAILURES = frozenset({"LivenessProbeFailed", "StartupProbeFailed", EVICTED})
"""Exit reasons of a task kukeond stopped (a probe, an eviction): a failure whatever its
code (a process that handles SIGTERM and exits 0 was still stopped for failing), as
Kubernetes counts it."""


def failure_code(code: int, reason: str | None) -> int:
    """The exit code the restart policy and the cell's state decide from."""
    return 1 if code == 0 and reason in PROBE_FAILURES else code


@dataclass(frozen=True, slots=True)
class Exit:
    """A container's process that ended: its code, when, and why (status ``reason``)."""

    code: int
    finished: datetime
    reason: str | None
    clock: bool = False
    """``finished`` is the planning clock: the first time this exit was seen."""
    identity: str = ""
    """Which exit this is, the same for every pass that sees it: the task's pid and
    containerd's exit time, or the pid alone when containerd has no exit time (each
    pass that sees such an exit has its own clock)."""
    said: str | None = None
    """The last line the process wrote, for a failed exit: the status message."""


def exit_signal_name(code: int) -> str | None:
    """`SIGKILL` for 137: a task killed by a signal exits with 128 + the signal's number;
    a real-time one is named as docker names it (`SIGRTMIN+3` for 165: systemd's stop
    signal); None for a code that is no signal's or a signal without a name (32, 33)."""
    number = code - 128
    if 1 <= number <= RTMAX:
        name = signal_name(number)
        return None if name.isdigit() else name
    return None


def exit_reason(code: int, *, oom_killed: bool) -> str:
    """``Completed`` for 0, ``OOMKilled`` when the OOM killer killed a process of the
    container's cgroup, ``Error`` for another failure."""
    if code == 0:
        return "Completed"
    return "OOMKilled" if oom_killed else "Error"


def recorded_exit_time(previous: ContainerStatus) -> datetime | None:
    """The exit time already reported for the task that is no longer running: the one
    to keep for a task without an exit time of its own (its shim died)."""
    if previous.pid is None and previous.state not in (
        ContainerState.RUNNING,
        ContainerState.PAUSED,
    ):
        return previous.finish_time
    return None


def new_exit(previous: ContainerStatus, exited: Exit) -> bool:
    """Whether this exit is news: the container ran when last reported, or the exit
    differs from the one recorded (a pass that only waits for the backoff sees it again)."""
    if previous.state in (ContainerState.RUNNING, ContainerState.PAUSED):
        return True
    if previous.finish_time is None:
        return True
    return abs((previous.finish_time - exited.finished).total_seconds()) > 0.001


def started_by(start_time: datetime | None, finished: datetime) -> datetime | None:
    """A run's start no later than its ``finished``: the exit's time is containerd's, the
    start's kukeond's clock around the start call, so for a process that exits at once
    (or a clock stepped back) the start as recorded can follow the exit; the run then
    lasted no time, and its start is its finish (``finishTime >= startTime`` always)."""
    if start_time is not None and start_time > finished:
        return finished
    return start_time


def terminated(status: ContainerStatus, exited: Exit) -> ContainerTerminated:
    """How the run that started at ``status.start_time`` ended: its ``lastState``."""
    return ContainerTerminated(
        exit_code=exited.code,
        signal=exit_signal_name(exited.code),
        reason=exited.reason,
        message=exited.said,
        started_at=status.start_time,
        finished_at=exited.finished,
    )


def backoff_message(container: str, exited: Exit, *, pause: int, due: datetime) -> str:
    """The message of a container waiting out its back-off: Kubernetes' ``back-off 40s
    restarting failed container=NAME``, and when it ends (how it ended is ``lastState``).

    A statement that does not age: written once when the wait starts, it is as true a
    minute later (a countdown would need a status write per second, or go stale), and a
    pass that sees the same wait plans the same status, so it writes nothing."""
    failed = "failed " if failure_code(exited.code, exited.reason) != 0 else ""
    return f"back-off {pause}s restarting {failed}container={container}, due {due_text(due)}"


def waiting(
    status: ContainerStatus, container: str, exited: Exit, *, pause: int, due: datetime
) -> ContainerStatus:
    """The status of a container that ended with ``exited`` and waits until ``due`` for its
    restart: nothing runs (no pid, start or finish of a run of its own), the run that
    ended is ``lastState``."""
    return status.model_copy(
        update={
            "state": ContainerState.WAITING,
            "pid": None,
            "exit_code": None,
            "exit_signal": None,
            "start_time": None,
            "finish_time": None,
            "reason": CRASH_LOOP_BACK_OFF,
            "message": backoff_message(container, exited, pause=pause, due=due),
            "restart_time": due,
            "last_state": terminated(status, exited),
        }
    )


def unfolded(previous: ContainerStatus) -> ContainerStatus:
    """A ``Waiting`` status as the exit it waits after (``lastState`` moved back into the
    exit's fields), which is what the planner decides from; any other status as it is.

    Moved, not copied: the exit is said in one place, so a container whose restart an
    edit of its policy cancels during the wait ends with it as its own (Kubernetes'
    ``state.terminated``), not in ``lastState`` too. The run before it is not known any
    more (the wait's ``lastState`` replaced it); a restart puts the exit back there."""
    last = previous.last_state
    if previous.state != ContainerState.WAITING or last is None:
        return previous
    failed = failure_code(last.exit_code, last.reason) != 0
    return previous.model_copy(
        update={
            "state": ContainerState.FAILED if failed else ContainerState.STOPPED,
            "pid": None,
            "exit_code": last.exit_code,
            "exit_signal": last.signal,
            "reason": last.reason,
            "message": last.message,
            "start_time": last.started_at,
            "finish_time": last.finished_at,
            "last_state": None,
        }
    )


def own_exit(status: ContainerStatus) -> ContainerTerminated | None:
    """The run a status reports as ended in its own fields (not ``Waiting``), as a
    ``lastState``; None when it reports none."""
    if status.exit_code is None or status.finish_time is None or status.pid is not None:
        return None
    return ContainerTerminated(
        exit_code=status.exit_code,
        signal=status.exit_signal,
        reason=status.reason,
        message=status.message,
        started_at=status.start_time,
        finished_at=status.finish_time,
    )


def ended_run(status: ContainerStatus) -> tuple[int, str | None] | None:
    """The exit code and reason of the run a status reports as ended (a ``Waiting``
    container's is its ``lastState``), or None when none ended."""
    if status.state == ContainerState.WAITING:
        last = status.last_state
        return (last.exit_code, last.reason) if last is not None else None
    return (status.exit_code, status.reason) if status.exit_code is not None else None
