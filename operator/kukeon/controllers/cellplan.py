"""The cell controller's decisions as plain data: what to do with each container and the cell.

`plan_container` gets one container's effective spec (space defaults applied) and the
digest of the OCI spec built from it, what containerd holds of it (the container's labels,
its task), the status last reported and the clock, and returns a `ContainerPlan`: the host
actions in order (remove, create, delete a task, start), the Events to note, the status to
report, and when a restart that is owed but not yet due is to happen. `plan_cell` turns the
containers' plans into the cell's state, its `readyObserved` latch, its autoDelete and its
wake-up (`cellstop` is `desiredState: Stopped`). Nothing here does I/O: the executor
(`cellexec`) performs the actions, and every rule is unit-tested without a host.

A restart's timer starts at the task's exit time. A task whose shim died has none: the
first pass that sees the exit takes the clock's time and marks the plan `record_exit`, so
the executor writes it to the status at once; later passes read it back from there, so the
timer never moves forward and the restart happens when the backoff has passed. The pause
itself (`cellstate.restart_pause_seconds`) is decided from the stored status too (the run's
start and finish, ``backoffRestarts``), so a kukeond killed meanwhile decides the same one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from kukeon.api import (
    Cell,
    CellState,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ContainerTerminated,
    EventReason,
)
from kukeon.api.meta import INT64_MAX
from kukeon.api.probes import ProbeKind, ProbeResult, ProbeStatus
from kukeon.runtime.containerd.tasks import TaskStatus

from .cellexits import (
    EVICTED,
    TASK_LOST_EXIT_CODE,
    Exit,
    ended_run,
    exit_reason,
    new_exit,
    own_exit,
    recorded_exit_time,
    terminated,
    unfolded,
    waiting,
)
from .cellexits import exit_signal_name as exit_signal_name
from .cellexits import failure_code as failure_code
from .cellexits import started_by as started_by
from .cellstate import (
    DEFAULT_RESTART_MAX_RETRIES,
    ContainerObservation,
    crash_loop_restarts,
    derive_cell_state,
    due_text,
    restart_due_at,
    restart_owed,
    restart_pause_seconds,
)
from .restartwaits import RestartWait, counted_due, counted_start

CONTAINER_FAILED = "ContainerFailed"
"""A cell's reason while it is in Error: a container ended with a failure, not restarted."""

# --- what was observed ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObservedContainer:
    """The containerd container of a kukeon container: what it was created from."""

    spec_digest: str | None
    restarted_at: str
    """The cell's ``kukeon.io/restartedAt`` annotation when it was created."""


@dataclass(frozen=True, slots=True)
class ObservedTask:
    """A container's task as containerd reports it."""

    status: TaskStatus
    pid: int = 0
    exit_status: int = 0
    exited_at: datetime | None = None
    """None for a task whose shim died (containerd never learnt when it ended)."""
    oom_killed: bool = False
    """The container's memory cgroup counted an OOM kill (read only for a failed exit)."""
    last_line: str | None = None
    """The last line of the container's log (read only for a failed exit, not an OOM kill)."""


LIVE_TASK = (TaskStatus.RUNNING, TaskStatus.PAUSING, TaskStatus.PAUSED)


@dataclass(frozen=True, slots=True)
class ProbeKill:
    """A task kukeond stopped, for a failed liveness or startup probe or over its
    ephemeral-storage limit: its exit gets that reason."""

    pid: int
    reason: str
    """``LivenessProbeFailed``, ``StartupProbeFailed`` or ``Evicted``."""
    message: str


@dataclass(frozen=True, slots=True)
class ProbeView:
    """What the probes of a running task say (``probing``): started, ready, each result."""

    pid: int
    started: bool
    ready: bool
    probes: tuple[ProbeStatus, ...]

    @classmethod
    def fresh(cls, spec: ContainerSpec, pid: int = 0) -> ProbeView:
        """A task not probed yet: started without a startup probe, ready without a
        readiness probe too."""
        kinds = spec.probes()
        started = ProbeKind.STARTUP not in kinds
        return cls(
            pid=pid,
            started=started,
            ready=started and ProbeKind.READINESS not in kinds,
            probes=tuple(ProbeStatus(probe=kind) for kind in kinds),
        )


# --- what to do ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoveContainer:
    """Stop the container's task (grace, then SIGKILL), delete it and the container."""

    reason: str
    """``SpecChanged`` (a new history starts) or ``RestartRequested`` (kukectl restart)."""


@dataclass(frozen=True, slots=True)
class CreateContainer:
    """Create the containerd container from the built spec, labelled with its digest."""


@dataclass(frozen=True, slots=True)
class DeleteTask:
    """Delete a task that is not running (created but never started, or exited)."""


@dataclass(frozen=True, slots=True)
class StartTask:
    """Create and start a new task; its pid goes into the plan's status."""

    restart: bool
    """A restart under the restart policy (Event ``Restarted``) or a first start."""


Action = RemoveContainer | CreateContainer | DeleteTask | StartTask


@dataclass(frozen=True, slots=True)
class Note:
    """An Event to record about the cell."""

    reason: EventReason
    message: str
    warning: bool = False
    occurrence: str | None = None
    """What happened, when one thing can be seen by more than one pass (an exit): the
    recorder counts a repeat of the same occurrence once (see `exit_note`)."""


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    """What to do with one container and what to report of it."""

    container_id: str
    actions: tuple[Action, ...]
    notes: tuple[Note, ...]
    status: ContainerStatus
    """The status once the actions are done (``pid`` is filled in by a ``StartTask``)."""
    observation: ContainerObservation
    restart_at: datetime | None = None
    """When an owed restart is due (set only while it is not yet)."""
    wake_in: float | None = None
    """Seconds from the planning clock to ``restart_at``."""
    record_exit: bool = False
    """The exit's time is the clock's (containerd has none): write the status at once."""
    spec: ContainerSpec | None = None
    """The effective spec planned from (space defaults applied); None for a stop's plan."""

    @property
    def start(self) -> StartTask | None:
        found = [action for action in self.actions if isinstance(action, StartTask)]
        return found[0] if found else None

    def started(self, pid: int, *, at: datetime) -> ContainerStatus:
        """The status once the planned start gave ``pid`` at ``at`` (the plan's clock may
        be a grace period earlier when a container was removed first)."""
        return self.status.model_copy(update={"pid": pid, "start_time": at})


def task_beside_network(plan: ContainerPlan, reason: str | None) -> bool:
    """Whether the root container's new task is created while the cell's network namespace
    is attached (and started after): on a first start only (a restart's attachment is
    there already), and not while the cell's status ``reason`` says its attachment fails
    (each retry would make a task, then delete it)."""
    start = plan.start
    return start is not None and not start.restart and reason != "NetworkFailed"


def observed_exit(
    previous: ContainerStatus, task: ObservedTask | None, *, kept: bool, now: datetime
) -> Exit | None:
    """The exit the container's observation amounts to, or None when it runs or is to
    be started."""
    if task is None:
        if kept and previous.state == ContainerState.RUNNING and previous.pid:
            # It ran and its task is gone without an exit we saw: its shim died
            # (containerd then kills and removes the task) or the host restarted.
            return Exit(
                code=TASK_LOST_EXIT_CODE,
                finished=now,
                reason="TaskLost",
                clock=True,
                identity=f"pid {previous.pid}",
            )
        if kept and previous.exit_code is not None and previous.finish_time:
            # An exit already recorded whose task has gone since (its shim died after
            # it): the restart policy and backoff decide as they did, and what the run
            # said last is the status' (its log is the next run's once it restarts).
            return Exit(
                code=previous.exit_code,
                finished=previous.finish_time,
                reason=previous.reason,
                identity=f"exited {previous.finish_time.isoformat()}",
                said=previous.message,
            )
        return None
    if task.status == TaskStatus.CREATED or task.status in LIVE_TASK:
        return None
    # STOPPED, or UNKNOWN (containerd's word for a task whose shim is gone).
    finished = task.exited_at or recorded_exit_time(previous)
    return Exit(
        code=task.exit_status,
        finished=finished or now,
        reason=exit_reason(task.exit_status, oom_killed=task.oom_killed),
        clock=finished is None,
        identity=f"pid {task.pid}"
        + (f" exited {task.exited_at.isoformat()}" if task.exited_at else ""),
        said=task.last_line,
    )


def exit_note(container: str, exited: Exit) -> Note:
    """The Event of an exit, named by the exit's identity.

    Whether an exit is news is decided against the status last reported, as the pass was
    handed it; a second pass can see the same exit as news too (the task's /tasks/oom
    and /tasks/exit both wake the cell, and the second pass may get the cached cell
    before the first one's status write came back through the watch; or a pass fails
    after its Events and before its status write, and is retried). The occurrence lets
    the recorder count that exit once.
    """
    occurrence = f"{container} {exited.identity}" if exited.identity else None
    if exited.reason == "OOMKilled":
        return Note(
            EventReason.OOM_KILLED,
            f"container {container} was killed by the OOM killer (exit code {exited.code})",
            warning=True,
            occurrence=occurrence,
        )
    why = f" ({exited.reason})" if exited.reason else ""
    return Note(
        EventReason.EXITED,
        f"container {container} exited with code {exited.code}{why}",
        # A process kukeond stopped (a probe, an eviction) failed even if it exited 0.
        warning=failure_code(exited.code, exited.reason) != 0,
        occurrence=occurrence,
    )


# --- one container ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerInputs:
    """Everything `plan_container` decides from."""

    spec: ContainerSpec
    """The effective spec: space defaults applied."""
    name: str
    """Its containerd container id."""
    root: bool
    digest: str
    """Of the OCI spec built now (``kukeon.io/spec-digest``)."""
    restarted_at: str
    """The cell's ``kukeon.io/restartedAt`` annotation now."""
    previous: ContainerStatus | None
    container: ObservedContainer | None
    task: ObservedTask | None
    now: datetime
    probes: ProbeView | None = None
    """The probes' view of the task that runs (None: not probed yet)."""
    probe_kill: ProbeKill | None = None
    """The task a probe stopped, if one did."""
    restart_wait: RestartWait | None = None
    """This process's monotonic count of a restart's wait (None: the wall clock's alone)."""


@dataclass
class _Draft:
    actions: list[Action] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def plan_container(inputs: ContainerInputs) -> ContainerPlan:
    """The actions that bring one container where its spec and restart policy want it."""
    spec = inputs.spec
    # A container waiting for its restart is planned from the exit it waits after.
    previous = unfolded(inputs.previous or ContainerStatus(id=spec.id))
    draft = _Draft()
    container, task = inputs.container, inputs.task
    if container is not None and container.spec_digest != inputs.digest:
        draft.actions.append(RemoveContainer("SpecChanged"))
        container, task = None, None
        previous = ContainerStatus(id=spec.id)  # a new spec starts its own history
    elif container is not None and container.restarted_at != inputs.restarted_at:
        # A restart asked for by the user: a fresh container, the same history, but a
        # crash loop starts over (as a new pod's back-off does): a crash right after it
        # restarts at once.
        draft.actions.append(RemoveContainer("RestartRequested"))
        container, task = None, None
        previous = previous.model_copy(update={"backoff_restarts": None})
    kept = container is not None
    if not kept:
        draft.actions.append(CreateContainer())
    status = previous.model_copy(
        update={
            "name": inputs.name,
            "image": spec.image,
            "reason": None,
            "message": None,
            "restart_time": None,  # due only while it waits (`waiting`)
        }
    )
    exited = observed_exit(previous, task, kept=kept, now=inputs.now)
    kill = inputs.probe_kill
    if exited is not None and kill is not None and kill.pid in (previous.pid, task and task.pid):
        exited = replace(exited, reason=kill.reason, said=kill.message)
    elif exited is not None and previous.reason == EVICTED and not new_exit(previous, exited):
        # The eviction recorded stays what it was (no kill remembered after a restart of
        # kukeond): read again as a SIGTERM's exit, it would be restarted.
        exited = replace(exited, reason=EVICTED, said=previous.message)
    if exited is None:
        status = _live(status, task, draft, now=inputs.now, ended=own_exit(previous))
        return _plan(inputs, draft, status, owed=False)
    if new_exit(previous, exited):
        draft.notes.append(exit_note(spec.id, exited))
    return _after_exit(inputs, draft, status, exited, task_present=task is not None)


def _live(
    status: ContainerStatus,
    task: ObservedTask | None,
    draft: _Draft,
    *,
    now: datetime,
    ended: ContainerTerminated | None,
) -> ContainerStatus:
    """A container without an exit: start its task, or report the one that runs. A
    start after a run that ended (``ended``: a `kukectl restart` of a container that
    exited or waited for its restart) keeps that run's end as ``lastState``."""
    if task is not None and task.status in LIVE_TASK:
        state = (
            ContainerState.RUNNING if task.status == TaskStatus.RUNNING else ContainerState.PAUSED
        )
        return status.model_copy(update={"state": state, "pid": task.pid})
    if task is not None:  # created but never started
        draft.actions.append(DeleteTask())
    draft.actions.append(StartTask(restart=False))
    return status.model_copy(
        update={
            "state": ContainerState.RUNNING,
            "pid": None,
            "start_time": now,
            "exit_code": None,
            "exit_signal": None,
            "finish_time": None,
            "last_state": ended or status.last_state,
        }
    )


def _after_exit(
    inputs: ContainerInputs,
    draft: _Draft,
    status: ContainerStatus,
    exited: Exit,
    *,
    task_present: bool,
) -> ContainerPlan:
    """An exited container: reported as ended, restarted when owed and due."""
    spec, code = inputs.spec, exited.code
    owed = exited.reason != EVICTED and restart_owed(
        policy=str(spec.restart_policy),
        exit_code=failure_code(code, exited.reason),
        restart_count=status.restart_count,
        max_retries=spec.restart_max_retries,
    )
    status = status.model_copy(
        update={
            "state": ContainerState.STOPPED
            if failure_code(code, exited.reason) == 0
            else ContainerState.FAILED,
            "pid": None,
            "exit_code": code,
            "exit_signal": exit_signal_name(code),
            "start_time": started_by(status.start_time, exited.finished),
            "finish_time": exited.finished,
            "reason": exited.reason,
            # What the process said last, as Kubernetes' FallbackToLogsOnError.
            "message": exited.said,
        }
    )
    if not owed:
        if exited.reason != EVICTED and _out_of_retries(spec, failure_code(code, exited.reason)):
            status = status.model_copy(update={"message": _gave_up(status, exited, spec)})
        return _plan(inputs, draft, status, owed=False, record_exit=exited.clock)
    # Read from the status, not kept in memory: a kukeond killed meanwhile, or a node that
    # comes back, decides the same pause.
    loop = crash_loop_restarts(
        backoff_restarts=status.backoff_restarts or 0,
        started_at=counted_start(inputs.restart_wait, status.start_time, exited.finished),
        finished_at=exited.finished,
    )
    pause = restart_pause_seconds(backoff_seconds=spec.restart_backoff_seconds, loop_restarts=loop)
    due = _due(inputs, exited, loop_restarts=loop, pause=pause)
    due = counted_due(inputs.restart_wait, (exited.identity, pause), due, inputs.now)
    remaining = (due - inputs.now).total_seconds()
    if remaining > 0:
        status = waiting(status, spec.id, exited, pause=pause, due=due)
        draft.notes.append(
            Note(EventReason.BACK_OFF, f"back-off restarting container {spec.id}", warning=True)
        )
        return _plan(
            inputs,
            draft,
            status,
            owed=True,
            restart_at=due,
            wake_in=remaining,
            record_exit=exited.clock,
        )
    if task_present:
        draft.actions.append(DeleteTask())
    draft.actions.append(StartTask(restart=True))
    status = _restarted(status, exited, now=inputs.now, loop_restarts=loop)
    return _plan(inputs, draft, status, owed=False, record_exit=exited.clock)


def _out_of_retries(spec: ContainerSpec, failure: int) -> bool:
    """An on-failure container that failed once more after its last allowed restart."""
    return str(spec.restart_policy) == "on-failure" and failure != 0


def _gave_up(status: ContainerStatus, exited: Exit, spec: ContainerSpec) -> str:
    """Why a failed on-failure container stays down: its last line, then the limit."""
    limit = spec.restart_max_retries or DEFAULT_RESTART_MAX_RETRIES
    why = f"not restarted: {status.restart_count} restarts made (restartMaxRetries {limit})"
    said = exited.said
    if said is not None and (said == why or said.endswith(f" ({why})")):
        return said  # read back from the status (its shim died): said once already
    return f"{said} ({why})" if said else why


CLOCK_STEP_SLACK = timedelta(seconds=60)
"""How far a clock may have stepped back before a wait is re-anchored: an exit containerd
timed a little after the pass's clock (skew between the two) keeps its due time, and so
the status it reported."""


def _due(inputs: ContainerInputs, exited: Exit, *, loop_restarts: int, pause: float) -> datetime:
    """When the restart after ``exited`` is due: its pause after the exit, on the wall clock
    (read from the status, so a kukeond restart keeps it), never much more than the pause
    from now. A clock stepped back since the exit (NTP correcting one that ran ahead) would
    otherwise hold the restart for as long as the step (a day back: a 10 s back-off waited
    a day): past `CLOCK_STEP_SLACK` the wait is until the due time it already reported
    within the pause, else the pause from now, which the next pass reads back so that the
    wait ends."""
    due = restart_due_at(
        finished_at=exited.finished,
        backoff_seconds=inputs.spec.restart_backoff_seconds,
        loop_restarts=loop_restarts,
    )
    latest = inputs.now + timedelta(seconds=pause)
    if due <= latest + CLOCK_STEP_SLACK:
        return due
    reported = inputs.previous.restart_time if inputs.previous is not None else None
    return reported if reported is not None and reported <= latest else latest


def _restarted(
    status: ContainerStatus, exited: Exit, *, now: datetime, loop_restarts: int
) -> ContainerStatus:
    """The status of a container restarted at `now` after `exited`, the restart counted
    (``restartCount``, and ``backoffRestarts`` for the crash loop it continues)."""
    last = terminated(status, exited)
    return status.model_copy(
        update={
            "state": ContainerState.RUNNING,
            "pid": None,
            # Both stop at the model's bound: one past it, stored, would fail every
            # status write from then on (the restart made, never reported).
            "restart_count": min(status.restart_count + 1, INT64_MAX),
            "backoff_restarts": min(loop_restarts + 1, INT64_MAX),
            "start_time": now,
            # How the last one ended is in lastState; the new task has neither exited nor
            # said anything yet (as Kubernetes' state.running beside lastState.terminated).
            "exit_code": None,
            "exit_signal": None,
            "finish_time": None,
            "reason": None,
            "message": None,
            "last_state": last,
        }
    )


def _plan(
    inputs: ContainerInputs,
    draft: _Draft,
    status: ContainerStatus,
    *,
    owed: bool,
    restart_at: datetime | None = None,
    wake_in: float | None = None,
    record_exit: bool = False,
) -> ContainerPlan:
    running = status.state == ContainerState.RUNNING
    status = _with_probes(inputs, draft, status, running=running)
    resources = inputs.spec.resources
    limit = resources.ephemeral_storage_limit_bytes if resources is not None else None
    if status.ephemeral_storage_limit_bytes != (limit or None):
        status = status.model_copy(update={"ephemeral_storage_limit_bytes": limit or None})
    ended = None if running else ended_run(status)
    return ContainerPlan(
        container_id=inputs.spec.id,
        actions=tuple(draft.actions),
        notes=tuple(draft.notes),
        status=status,
        observation=ContainerObservation(
            inputs.spec.id,
            root=inputs.root,
            running=running,
            exit_code=None if ended is None else failure_code(*ended),
            restart_owed=owed,
            ready=status.ready,
        ),
        restart_at=restart_at,
        wake_in=wake_in,
        record_exit=record_exit,
        spec=inputs.spec,
    )


def _with_probes(
    inputs: ContainerInputs, draft: _Draft, status: ContainerStatus, *, running: bool
) -> ContainerStatus:
    """``started``, ``ready`` and the probes' results: the probes' view of the task that
    runs on, a fresh one for a task started now, the last results of one that ended."""
    if not running:
        kill = inputs.probe_kill
        message = status.message
        if kill is not None and status.reason == kill.reason and message is None:
            message = kill.message
        return status.model_copy(update={"started": False, "ready": False, "message": message})
    view = inputs.probes
    starting = any(isinstance(action, StartTask) for action in draft.actions)
    if starting or view is None or view.pid != status.pid:
        view = ProbeView.fresh(inputs.spec)
    return status.model_copy(
        update={"started": view.started, "ready": view.ready, "probes": list(view.probes)}
    )


# --- the cell -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CellPlan:
    """What the cell's status says after its containers' plans, and what follows."""

    state: CellState
    ready_observed: bool
    clear_reason: bool
    """The cell's ``reason`` and ``message`` are cleared (no wait, or a pull note to drop)."""
    delete: bool
    """autoDelete: every workload exited with no restart owed, and the cell was once Ready."""
    wake_in: float | None
    """The soonest owed restart: the pass ends asking to come back then."""
    not_ready: str | None = None
    """Every task runs but a probe does not pass: which containers and why (the message
    of reason ``ContainersNotReady``)."""
    restart_at: datetime | None = None
    restarting: str | None = None
    """When the soonest owed restart is due, and the container it restarts."""
    failed: str | None = None
    """The cell is in Error: which containers ended for good with a failure and how (the
    message of reason ``ContainerFailed``), so its status says why without a describe."""

    @property
    def failed_reason(self) -> str | None:
        """``ContainerFailed`` while `failed` says why the cell is in Error, else None."""
        return CONTAINER_FAILED if self.failed is not None else None

    @property
    def wait_message(self) -> str:
        """The cell's message while a restart waits (reason ``CrashLoopBackOff``): a time,
        not a countdown, so it stays true and each pass of one wait writes the same."""
        if self.restart_at is None:
            return "a restart is owed"
        return f"a restart is owed: container {self.restarting} at {due_text(self.restart_at)}"


def not_ready_message(statuses: Sequence[ContainerStatus]) -> str | None:
    """``container web: readiness probe failed: GET ...`` for each running container that
    is not ready, or None when none is."""
    parts: list[str] = []
    for status in statuses:
        if status.state != ContainerState.RUNNING or status.ready:
            continue
        failing = [p for p in status.probes if p.result == ProbeResult.FAILURE]
        if failing:
            why = "; ".join(
                f"{p.probe} probe failed: {p.message or ''}".rstrip(": ") for p in failing
            )
        elif not status.started:
            why = "startup probe has not succeeded yet"
        else:
            why = "readiness probe has not succeeded yet"
        parts.append(f"container {status.id}: {why}")
    return "; ".join(parts) or None


def failed_message(containers: Sequence[ContainerPlan]) -> str | None:
    """``container app exited with code 3: boom`` for each container that ended with a
    failure and is not restarted (what puts a cell in Error), or None when none did."""
    parts: list[str] = []
    for plan in containers:
        seen, status = plan.observation, plan.status
        if seen.running or seen.restart_owed or seen.exit_code in (None, 0):
            continue
        text = f"container {plan.container_id} exited with code {status.exit_code}"
        if status.reason and status.reason != "Error":  # Error says nothing the code does not
            text += f" ({status.reason})"
        parts.append(f"{text}: {status.message}" if status.message else text)
    return "; ".join(parts) or None


def plan_cell(cell: Cell, containers: Sequence[ContainerPlan]) -> CellPlan:
    observations = [plan.observation for plan in containers]
    state = derive_cell_state(
        containers=observations,
        desired_stopped=False,
        build_error=False,
        host_unobservable=False,
        ready_observed=cell.status.ready_observed,
    )
    ready_observed = cell.status.ready_observed or state == CellState.READY
    waits = [plan for plan in containers if plan.wake_in is not None]
    soonest = min(waits, key=lambda plan: plan.wake_in or 0.0) if waits else None
    wake_in = soonest.wake_in if soonest is not None else None
    delete = (
        cell.spec.auto_delete
        and ready_observed
        and bool(observations)
        and all(not o.running and not o.restart_owed for o in observations)
    )
    not_ready = None
    if observations and all(o.running for o in observations):
        not_ready = not_ready_message([plan.status for plan in containers])
    return CellPlan(
        state=state,
        ready_observed=ready_observed,
        clear_reason=wake_in is None or cell.status.reason == "Pulling",
        delete=delete,
        wake_in=wake_in,
        not_ready=not_ready,
        restart_at=soonest.restart_at if soonest is not None else None,
        restarting=soonest.container_id if soonest is not None else None,
        failed=failed_message(containers) if state == CellState.ERROR else None,
    )
