"""Probing the running containers of this node's cells, each probe on its own timer.

The cell controller hands over what runs after every pass (`ProbeManager.sync`: the
containers, their task's pid, the cell's address) and reads back what the probes say
(`view`, `kill`) in the next one; the manager never writes a status itself. A probe is a
timer on the event loop (``loop.call_at``) that starts one short check task when due, so
200 probed cells cost 200 timers and no long-lived task; a check never blocks another
cell's reconcile, and a probe has at most one check in flight.

Kubernetes' semantics: readiness and liveness start once the startup probe has succeeded
(each after its ``initialDelaySeconds`` from the task's start); a result flips after
``failureThreshold`` consecutive failures or ``successThreshold`` consecutive successes. A
failed startup or liveness probe stops the task (SIGTERM, its grace, SIGKILL) from a task
of its own, remembered as a `ProbeKill` so the exit gets the probe's reason and the restart
policy decides what follows. Readiness only changes ``ready``.

What changes the cell's status (started, ready, a result, a failure count below the
threshold) requeues the cell (``trigger``): a steady result, passing or failing, writes
nothing. The failure count shown stops at the threshold for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from kukeon.api import Cell, ContainerSpec, EventReason, EventType, Kind
from kukeon.api.probes import Probe, ProbeKind, ProbeResult, ProbeStatus
from kukeon.framework import ConvergeGate, EventRecorder
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdError
from kukeon.runtime.containerd.stopsignal import container_stop_signal

from .cellplan import ProbeKill, ProbeView
from .ephemeralstorage import StorageLimits
from .probers import CheckResult, Prober, ProbeTarget, truncate

log = logging.getLogger(__name__)

CellKey = tuple[str, str, str, str]
Trigger = Callable[[Kind, tuple[str, ...]], bool]

PROBE_LABELS = ("realm", "space", "stack", "cell", "container", "probe", "result")
KILL_REASONS = {
    ProbeKind.LIVENESS: "LivenessProbeFailed",
    ProbeKind.STARTUP: "StartupProbeFailed",
}


def probe_counter(registry: CollectorRegistry | None) -> Counter:
    return Counter(
        "kukeon_probe",
        "Probe checks run by this node, by container, probe and result (success/failure).",
        PROBE_LABELS,
        registry=registry,
    )


@dataclass(frozen=True, slots=True)
class RunningContainer:
    """One container of a cell whose task runs, as the cell's pass last saw it."""

    spec: ContainerSpec
    pid: int
    containerd_id: str


@dataclass
class _Probe:
    kind: ProbeKind
    spec: Probe
    result: ProbeResult = ProbeResult.UNKNOWN
    message: str | None = None
    warning: str | None = None
    """The warning of its last success (an unfollowed redirect), Evented when it changes."""
    successes: int = 0
    failures: int = 0
    transition: datetime | None = None
    timer: asyncio.TimerHandle | None = None
    check: asyncio.Task[None] | None = None

    def status(self) -> ProbeStatus:
        return ProbeStatus(
            probe=self.kind,
            result=self.result,
            message=self.message,
            consecutive_failures=min(self.failures, self.spec.failure_threshold),
            last_transition_time=self.transition,
        )


@dataclass
class _Container:
    """The probes of one task (a new pid, spec or address is a new `_Container`)."""

    cell: Cell
    key: CellKey
    container: str
    pid: int
    signature: str
    target: ProbeTarget
    started_at: float
    """The loop's clock when first seen: initial delays count from here."""
    probes: dict[ProbeKind, _Probe] = field(default_factory=dict)
    started: bool = False
    stopping: bool = False

    @property
    def ready(self) -> bool:
        if not self.started:
            return False
        readiness = self.probes.get(ProbeKind.READINESS)
        return readiness is None or readiness.result == ProbeResult.SUCCESS

    def shown(self) -> tuple[object, ...]:
        """What the status would show, cheaply: compared around every check, where building
        two ``ProbeView`` models and comparing them cost ~35 µs (a check is ~250 µs)."""
        return (
            self.started,
            self.ready,
            tuple(
                (p.result, min(p.failures, p.spec.failure_threshold), p.message, p.transition)
                for p in self.probes.values()
            ),
        )

    def view(self) -> ProbeView:
        return ProbeView(
            pid=self.pid,
            started=self.started,
            ready=self.ready,
            probes=tuple(p.status() for p in self.probes.values()),
        )


def _signature(spec: ContainerSpec, pid: int, address: str | None) -> str:
    probes = {str(kind): probe.model_dump(mode="json") for kind, probe in spec.probes().items()}
    text = repr((pid, address, sorted(probes.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ProbeManager:
    """Every probe of this node; see the module's docstring."""

    def __init__(
        self,
        *,
        containerd: Callable[[], ContainerdClient],
        trigger: Trigger,
        fifo_root: Path,
        stop_grace_seconds: float,
        recorder: EventRecorder | None = None,
        collector_registry: CollectorRegistry | None = None,
    ) -> None:
        self._containerd = containerd
        self._prober: Prober | None = None
        self.trigger = trigger
        self.fifo_root = fifo_root
        self.stop_grace_seconds = stop_grace_seconds
        self.recorder = recorder
        self.checks = probe_counter(collector_registry)
        self._containers: dict[tuple[CellKey, str], _Container] = {}
        self._kills: dict[tuple[CellKey, str], ProbeKill] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._counted: dict[CellKey, set[tuple[str, ...]]] = {}
        self.storage: StorageLimits | None = None
        """The ephemeral-storage limits of the same tasks: handed the same, asked too."""
        self.gate = ConvergeGate()
        """No check (a failed one stops a task) while closed: each probe waits its period."""

    # --- what the cell controller calls -------------------------------------------------

    def view(self, key: CellKey, container: str) -> ProbeView | None:
        found = self._containers.get((key, container))
        return None if found is None else found.view()

    def views(self, key: CellKey) -> Callable[[str], ProbeView | None]:
        """``view`` of the cell's containers, by container id."""
        return lambda container: self.view(key, container)

    def kill(self, key: CellKey, container: str) -> ProbeKill | None:
        found = self._kills.get((key, container))
        if found is None and self.storage is not None:
            return self.storage.kill(key, container)
        return found

    def sync(
        self,
        cell: Cell,
        key: CellKey,
        *,
        namespace: str,
        address: str | None,
        running: Iterable[RunningContainer],
        held: Collection[str] = (),
    ) -> None:
        """Probe exactly these tasks from now on (the cell's other containers stop, but the
        ``held`` ones: their probes go on as they were); the storage limits watch those
        with one."""
        running = list(running)
        if self.storage is not None:
            self.storage.sync(cell, key, namespace=namespace, running=running, held=held)
        wanted: set[str] = set()
        for item in running:
            if not item.spec.probes():
                continue
            wanted.add(item.spec.id)
            slot = (key, item.spec.id)
            kill = self._kills.get(slot)
            if kill is not None and kill.pid != item.pid:
                del self._kills[slot]  # a new task: the old one's exit was reported
            signature = _signature(item.spec, item.pid, address)
            current = self._containers.get(slot)
            if current is not None:
                current.cell = cell
                if current.signature == signature:
                    continue
                self._cancel(current)
            target = ProbeTarget(
                namespace=namespace,
                container_id=item.containerd_id,
                address=address,
                fifo_root=self.fifo_root,
            )
            self._start(cell, key, item, signature, target)
        for slot in [s for s in self._containers if s[0] == key and s[1] not in wanted]:
            if slot[1] in held:
                self._containers[slot].cell = cell
                continue
            self._cancel(self._containers.pop(slot))

    def forget(self, key: CellKey) -> None:
        """The cell is gone from this node or stopped: no probe of it runs any more, and
        its series leave the metrics."""
        if self.storage is not None:
            self.storage.forget(key)
        for slot in [s for s in self._containers if s[0] == key]:
            self._cancel(self._containers.pop(slot))
        for slot in [s for s in self._kills if s[0] == key]:
            del self._kills[slot]
        for labels in self._counted.pop(key, set()):
            with contextlib.suppress(KeyError):
                self.checks.remove(*labels)

    async def close(self) -> None:
        for key in {slot[0] for slot in self._containers}:
            self.forget(key)
        if self.storage is not None:
            await self.storage.close()
        for task in list(self._stopping):
            task.cancel()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
        if self._prober is not None:
            await self._prober.close()
            self._prober = None

    # --- timers -------------------------------------------------------------------------

    def _start(
        self, cell: Cell, key: CellKey, item: RunningContainer, signature: str, target: ProbeTarget
    ) -> None:
        loop = asyncio.get_running_loop()
        entry = _Container(
            cell=cell,
            key=key,
            container=item.spec.id,
            pid=item.pid,
            signature=signature,
            target=target,
            started_at=loop.time(),
        )
        for kind, spec in item.spec.probes().items():
            entry.probes[kind] = _Probe(kind=kind, spec=spec)
        entry.started = ProbeKind.STARTUP not in entry.probes
        self._containers[(key, item.spec.id)] = entry
        for probe in entry.probes.values():
            if probe.kind == ProbeKind.STARTUP or entry.started:
                self._schedule(entry, probe, entry.started_at + probe.spec.initial_delay_seconds)

    def _schedule(self, entry: _Container, probe: _Probe, when: float) -> None:
        loop = asyncio.get_running_loop()
        probe.timer = loop.call_at(max(when, loop.time()), self._due, entry, probe)

    def _due(self, entry: _Container, probe: _Probe) -> None:
        probe.timer = None
        if entry.stopping or self._containers.get((entry.key, entry.container)) is not entry:
            return
        if not self.gate.is_open():
            self._schedule(
                entry, probe, asyncio.get_running_loop().time() + probe.spec.period_seconds
            )
            return
        probe.check = asyncio.create_task(
            self._check(entry, probe), name=f"kukeon-probe-{probe.kind}"
        )

    def _cancel(self, entry: _Container) -> None:
        entry.stopping = True
        for probe in entry.probes.values():
            if probe.timer is not None:
                probe.timer.cancel()
                probe.timer = None
            if probe.check is not None and not probe.check.done():
                probe.check.cancel()
            probe.check = None

    # --- one check ----------------------------------------------------------------------

    async def _check(self, entry: _Container, probe: _Probe) -> None:
        try:
            if self._prober is None:
                self._prober = Prober(self._containerd())
            result = await self._prober.check(probe.spec, entry.target)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug here must not end the probing of the cell
            log.exception(
                "probe %s of %s/%s failed to run", probe.kind, "/".join(entry.key), entry.container
            )
            result = CheckResult(False, truncate(f"probe could not run: {error!r}"))
        finally:
            probe.check = None
        if entry.stopping:
            return
        self._count(entry, probe, result)
        before = entry.shown()
        self._record(entry, probe, result)
        self._follow_up(entry, probe, result)
        if entry.shown() != before:
            self.trigger(Kind.CELL, entry.key)

    def _count(self, entry: _Container, probe: _Probe, result: CheckResult) -> None:
        labels = (
            *entry.key,
            entry.container,
            str(probe.kind),
            "success" if result.success else "failure",
        )
        self.checks.labels(*labels).inc()
        self._counted.setdefault(entry.key, set()).add(labels)

    def _record(self, entry: _Container, probe: _Probe, result: CheckResult) -> None:
        spec = probe.spec
        self._warn(entry, probe, result.warning)
        if result.success:
            probe.successes += 1
            probe.failures = 0
            if probe.result != ProbeResult.SUCCESS and probe.successes >= spec.success_threshold:
                self._flip(probe, ProbeResult.SUCCESS, None)
            return
        probe.successes = 0
        probe.failures += 1
        if probe.failures <= spec.failure_threshold:
            probe.message = result.message  # a steady failure keeps its first words
        if probe.result != ProbeResult.FAILURE and probe.failures >= spec.failure_threshold:
            self._flip(probe, ProbeResult.FAILURE, result.message)
            self._event(
                entry,
                f"{probe.kind.capitalize()} probe of container {entry.container} failed "
                f"{probe.failures} time(s) in a row: {result.message}",
            )

    def _warn(self, entry: _Container, probe: _Probe, warning: str | None) -> None:
        """A ``ProbeWarning`` Event when a success's warning changes: kubelet writes one per
        check, every period; here a steady redirect is one Event (a repeat after a change
        back bumps its count, the recorder's)."""
        if warning == probe.warning:
            return
        probe.warning = warning
        if warning is not None and self.recorder is not None:
            message = f"{probe.kind.capitalize()} probe of container {entry.container}: {warning}"
            self.recorder.event(
                entry.cell, EventReason.PROBE_WARNING, message, type=EventType.WARNING
            )

    def _flip(self, probe: _Probe, result: ProbeResult, message: str | None) -> None:
        probe.result = result
        probe.message = message
        probe.transition = datetime.now(UTC)

    def _follow_up(self, entry: _Container, probe: _Probe, result: CheckResult) -> None:
        """The next check of this probe, the start of the others, or the task's stop."""
        loop = asyncio.get_running_loop()
        if probe.kind in KILL_REASONS and probe.result == ProbeResult.FAILURE:
            self._stop_task(entry, probe)
            return
        if probe.kind == ProbeKind.STARTUP and probe.result == ProbeResult.SUCCESS:
            entry.started = True
            for other in entry.probes.values():
                if other.kind != ProbeKind.STARTUP:
                    self._schedule(
                        entry, other, entry.started_at + other.spec.initial_delay_seconds
                    )
            return
        self._schedule(entry, probe, loop.time() + probe.spec.period_seconds)

    def _stop_task(self, entry: _Container, probe: _Probe) -> None:
        reason = KILL_REASONS[probe.kind]
        message = f"{probe.kind} probe failed: {probe.message or ''}".rstrip(": ")
        self._kills[(entry.key, entry.container)] = ProbeKill(entry.pid, reason, message)
        self._cancel(entry)
        grace: float = self.stop_grace_seconds
        for asked in (
            probe.spec.termination_grace_period_seconds,
            entry.cell.spec.termination_grace_period_seconds,
        ):
            if asked is not None:
                grace = asked
                break
        self._event(entry, f"stopping container {entry.container}: {message}", killing=True)
        task = asyncio.create_task(self._terminate(entry, grace), name="kukeon-probe-stop")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _terminate(self, entry: _Container, grace: float) -> None:
        tasks = self._containerd().tasks(entry.target.namespace)
        try:
            current = await tasks.get(entry.target.container_id)
            if current.pid == entry.pid:  # never a newer task of the same container
                stop = await container_stop_signal(
                    self._containerd(), entry.target.namespace, entry.target.container_id
                )
                await tasks.stop(entry.target.container_id, grace_period=grace, signal=stop)
        except ContainerdError as error:
            log.warning("stopping %s after its failed probe: %s", entry.target.container_id, error)
        finally:
            self.trigger(Kind.CELL, entry.key)

    def _event(self, entry: _Container, message: str, *, killing: bool = False) -> None:
        if self.recorder is None:
            return
        if killing:
            self.recorder.event(entry.cell, EventReason.KILLING, message, type=EventType.NORMAL)
        else:
            self.recorder.event(entry.cell, EventReason.UNHEALTHY, message, type=EventType.WARNING)
