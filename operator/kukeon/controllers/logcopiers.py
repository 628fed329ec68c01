"""The log copiers of the tasks that run here: watched, and replaced when one dies.

Each container's output reaches its log through a copier process (see
:mod:`kukeon.runtime.containerd.logcopier`). Killed while its container runs, it used to
take the container's logging with it, silently: every later line was lost and the cell
still said Ready. The cell controller hands every pass's running tasks to :class:`LogCopiers`,
which finds each task's copier and watches it through a pidfd (an exit wakes the event
loop; nothing polls). When a copier exits while its task still runs, a replacement is
started, and a warning Event on the cell says that what was written in between is lost.
Its output waits meanwhile in the pipes, which the copier's keeper holds (see
``logcopier``): nothing is lost, what the killed copier had logged and not yet taken from
the pipe is logged twice, and the container's writes block once the pipes are full until
the replacement reads them. A container with a TTY logs through its terminal's logger,
watched and replaced the same way: killed, it used to leave the container's later output
out of its log and attach sessions, and the container hung on its writes for good. The
keeper is watched alike: killed while its task runs, or missing (a task an older kukeond
started), kukeond starts one and says so (``LogKeeperReplaced``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from kukeon.api import Cell, ContainerState, ContainerStatus
from kukeon.api.event import EventReason, EventType
from kukeon.framework import EventRecorder
from kukeon.processes import ProcessId, identify
from kukeon.runtime.containerd.crilog import LogRotation
from kukeon.runtime.containerd.logcopier import (
    Terminal,
    alive,
    find_copier,
    forks_keeper,
    start_keeper,
    start_replacement,
    tell_task_ended,
)

from .cellfiles import CellFiles

log = logging.getLogger(__name__)

CellKey = tuple[str, str, str, str]

QUICK_EXIT_SECONDS = 10.0
TASK_END_LOG_SECONDS = 2.0
"""How long an exit's pass waits for the task's copier to log what its pipes hold."""
"""A replacement that dies sooner than this counts towards the next one's delay."""
MAX_DELAY_SECONDS = 60.0
_NEVER_KEPT = "was gone: killed, or never started (the task was started by an older kukeond)"


@dataclass(frozen=True, slots=True)
class CopiedTask:
    """A running task whose output a copier appends to ``log``."""

    container: str
    pid: int
    log: Path
    terminal: Terminal | None = None
    """An attachable container's: its logger is the terminal's."""


@dataclass(eq=False)
class _Watched:
    key: CellKey
    container: str
    pid: int
    """The task's pid as the cell's pass saw it."""
    log: Path
    cell: Cell
    terminal: Terminal | None = None
    task: ProcessId | None = None
    copier: ProcessId | None = None
    pidfd: int | None = None
    """Watching ``copier``."""
    keeper_pidfd: int | None = None
    """Watching the keeper of the task's output pipes."""
    keeping: bool = False
    """A keeper is being started or watched: no second one."""
    keeper_started_at: float = 0.0
    keeper_quick_exits: int = 0
    started_at: float = 0.0
    quick_exits: int = 0
    done: bool = False
    """Forgotten: whatever is under way for it stops."""
    pending: set[asyncio.Task[None]] = field(default_factory=set)


def replacement_counter(registry: CollectorRegistry | None) -> Counter:
    return Counter(
        "kukeon_log_copier_replacements",
        "Container log copiers that exited while their container ran, by outcome: replaced "
        "(its output is logged again) or lost (its output could not be reopened).",
        ["outcome"],
        registry=registry,
    )


class LogCopiers:
    def __init__(
        self,
        *,
        recorder: EventRecorder | None = None,
        collector_registry: CollectorRegistry | None = None,
        rotation: LogRotation | None = None,
        copier_procs: Callable[[str], Sequence[Path]] | None = None,
    ) -> None:
        self.recorder = recorder
        self.rotation = rotation
        """How a replacement rotates the log (kukeond's settings, as a new task's logger)."""
        self.copier_procs = copier_procs
        """The cgroups a realm's replacement joins, as the shim's logger did (the cgroup
        driver's ``log_copier_procs``; None: none)."""
        self.replacements = replacement_counter(collector_registry)
        for outcome in ("replaced", "lost"):
            self.replacements.labels(outcome)  # 0 from the start, not an absent series
        self._watched: dict[CellKey, dict[str, _Watched]] = {}
        """Per cell, per container."""
        self._children: dict[subprocess.Popen[bytes], int] = {}
        self._told: dict[CellKey, dict[str, int]] = {}
        """Per cell, per container: the last task whose copier was told it ended."""
        """The replacements started here, and their pidfds (to wait for them)."""

    def sync(self, cell: Cell, key: CellKey, running: Sequence[CopiedTask]) -> None:
        """The cell's tasks that run now: a new one's copier is looked for (in the
        background: a cell's start does not wait for it); a task gone is forgotten."""
        current = {task.container: task for task in running}
        watched = self._watched.get(key, {})
        for container, entry in list(watched.items()):
            task = current.get(container)
            if task is None or entry.pid != task.pid:
                self._drop(entry)
            else:
                entry.cell = cell
        for task in running:
            if task.container not in watched:
                entry = _Watched(
                    key=key,
                    container=task.container,
                    pid=task.pid,
                    log=task.log,
                    cell=cell,
                    terminal=task.terminal,
                )
                self._watched.setdefault(key, {})[task.container] = entry
                self._spawn(entry, self._discover(entry))

    def sync_statuses(
        self, cell: Cell, files: CellFiles, statuses: Iterable[ContainerStatus]
    ) -> None:
        """``sync`` with the containers a pass found Ready (an attachable one's logger is
        its terminal's, see ``ttyio``)."""
        specs = {container.id: container for container in cell.spec.containers}
        running = [
            CopiedTask(
                container=status.id,
                pid=status.pid,
                log=files.log(status.id),
                terminal=Terminal(stdin=files.tty_stdin(status.id))
                if specs[status.id].attachable
                else None,
            )
            for status in statuses
            if status.state == ContainerState.RUNNING and status.pid and status.id in specs
        ]
        self.sync(cell, files.key, running)

    async def task_ended(self, key: CellKey, container: str, pid: int, log_file: Path) -> None:
        """A pass saw the task ``pid`` of ``container`` end: its copier is told (the shim
        holds the output pipes until the task is deleted, so no hangup tells it, and a last
        line without its end would wait for that) and given up to TASK_END_LOG_SECONDS to
        log what the pipes hold: the exit's status comes once the log has all the task wrote
        (docker waits for its copier too). Once per task."""
        told = self._told.setdefault(key, {})
        if told.get(container) == pid:
            return
        told[container] = pid
        entry = self._watched.get(key, {}).get(container)
        found: tuple[ProcessId, int] | None
        if entry is not None and entry.pid == pid and entry.pidfd and entry.copier:
            found = entry.copier, os.dup(entry.pidfd)  # the watch's may be closed meanwhile
        else:
            # Ended before its copier was found (a pass saw it run, or none did), being
            # replaced, or ended while kukeond was down: looked for by its log.
            found = await asyncio.to_thread(_copier_of, pid, log_file)
        if found is None:
            return
        copier, pidfd = found
        try:
            logged = await asyncio.to_thread(
                tell_task_ended, copier, pidfd, within=TASK_END_LOG_SECONDS
            )
        finally:
            os.close(pidfd)
        if not logged:
            log.info(
                "container %s/%s ended; its log copier had not logged all it wrote %.0f s later",
                "/".join(key),
                container,
                TASK_END_LOG_SECONDS,
            )

    def forget(self, key: CellKey) -> None:
        """The cell stops here or is gone: its copiers are no longer watched."""
        self._told.pop(key, None)
        for entry in list(self._watched.get(key, {}).values()):
            self._drop(entry)

    def _entries(self) -> list[_Watched]:
        return [entry for per_cell in self._watched.values() for entry in per_cell.values()]

    async def close(self) -> None:
        """Stop watching (the copiers themselves run on, as their tasks do)."""
        pending = [task for entry in self._entries() for task in entry.pending]
        for entry in self._entries():
            self._drop(entry)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        loop = asyncio.get_running_loop()
        for pidfd in self._children.values():
            loop.remove_reader(pidfd)
            os.close(pidfd)
        self._children.clear()

    # --- internals ----------------------------------------------------------------------

    def _spawn(self, entry: _Watched, work: Coroutine[Any, Any, None]) -> None:
        # Short-lived (a lookup, a replacement): kept on the entry, cancelled by close().
        task = asyncio.get_running_loop().create_task(work)
        entry.pending.add(task)
        task.add_done_callback(lambda done: self._finished(entry, done))

    @staticmethod
    def _finished(entry: _Watched, task: asyncio.Task[None]) -> None:
        entry.pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "watching the log copier of %s/%s failed",
                "/".join(entry.key),
                entry.container,
                exc_info=task.exception(),
            )

    async def _discover(self, entry: _Watched) -> None:
        procs = self.copier_procs(entry.key[0]) if self.copier_procs is not None else ()

        def look() -> tuple[ProcessId | None, ProcessId | None, int | None, int | None, bool]:
            task = identify(entry.pid)
            if task is None:
                return None, None, None, None, False
            copier = find_copier(entry.pid, entry.log)
            keeper = find_copier(entry.pid, entry.log, keeper=True)
            copier_pidfd = _pidfd_of(copier) if copier is not None else None
            if copier is not None and copier_pidfd is not None:
                # One an older kukeond started runs where the shim did; a new one is there.
                _join_realm(copier, procs, f"{'/'.join(entry.key)}/{entry.container}")
            return (
                task,
                copier,
                copier_pidfd,
                _pidfd_of(keeper) if keeper is not None else None,
                copier is not None and forks_keeper(copier),
            )

        entry.task, copier, pidfd, keeper_pidfd, forked = await asyncio.to_thread(look)
        if entry.done or entry.task is None:
            for opened in (pidfd, keeper_pidfd):
                if opened is not None:
                    os.close(opened)
            return
        if keeper_pidfd is not None:
            self._watch_keeper(entry, keeper_pidfd)
        if pidfd is None:
            # Died while kukeond was down (or before it looked): replaced at once.
            await self._replace(entry)
        else:
            self._watch(entry, pidfd, copier)
            if keeper_pidfd is None:  # killed while kukeond was down, or never forked
                await self._keep(entry, "was killed" if forked else _NEVER_KEPT)

    def _watch(self, entry: _Watched, pidfd: int, copier: ProcessId | None) -> None:
        entry.pidfd, entry.copier = pidfd, copier
        asyncio.get_running_loop().add_reader(pidfd, self._exited, entry)

    def _unwatch(self, entry: _Watched) -> None:
        if entry.pidfd is not None:
            asyncio.get_running_loop().remove_reader(entry.pidfd)
            os.close(entry.pidfd)
            entry.pidfd = entry.copier = None

    def _watch_keeper(self, entry: _Watched, pidfd: int) -> None:
        entry.keeper_pidfd = pidfd
        entry.keeping = True
        asyncio.get_running_loop().add_reader(pidfd, self._keeper_exited, entry)

    def _unwatch_keeper(self, entry: _Watched) -> None:
        if entry.keeper_pidfd is not None:
            asyncio.get_running_loop().remove_reader(entry.keeper_pidfd)
            os.close(entry.keeper_pidfd)
            entry.keeper_pidfd = None
        entry.keeping = False

    def _keeper_exited(self, entry: _Watched) -> None:
        # A keeper ends by itself only when its pipes hang up (the task's end); one that
        # exits while the task runs was killed. (A task that closed its output: the new
        # one finds no pipe with a writer and is not started.)
        self._unwatch_keeper(entry)
        if entry.done:
            return
        lived = time.monotonic() - entry.keeper_started_at
        quick = entry.keeper_started_at and lived < QUICK_EXIT_SECONDS
        entry.keeper_quick_exits = entry.keeper_quick_exits + 1 if quick else 0
        entry.keeping = True
        self._spawn(entry, self._keep(entry, "was killed", claimed=True))

    async def _keep(self, entry: _Watched, why: str, *, claimed: bool = False) -> None:
        """A keeper for the task's pipes, which have none (``why``: what became of it)."""
        if entry.keeping and not claimed:
            return
        entry.keeping = True
        try:
            await self._start_keeper(entry, why)
        finally:
            entry.keeping = entry.keeper_pidfd is not None

    async def _start_keeper(self, entry: _Watched, why: str) -> None:
        if entry.keeper_quick_exits:
            await asyncio.sleep(min(2.0**entry.keeper_quick_exits, MAX_DELAY_SECONDS))
        task = entry.task
        if entry.done or task is None:
            return
        process, pidfd = await asyncio.to_thread(_start_keeper_process, task, entry)
        if process is None:
            # The task ended, closed its output, or is a terminal whose logger is gone too
            # (that logger's replacement says its output is no longer logged).
            log.debug("%s/%s: no output pipe left to keep", "/".join(entry.key), entry.container)
            return
        self._reap_when_done(process)
        if entry.done:
            if pidfd is not None:
                os.close(pidfd)
            return  # it ends with the task's pipes, as the logger's keeper would
        where = f"{'/'.join(entry.key)}/{entry.container}"
        log.warning(
            "container %s: its output's keeper %s; started one (pid %d)", where, why, process.pid
        )
        self._event(
            entry,
            f"the keeper of container {entry.container}'s output pipes {why}; a new one holds "
            "them, so a killed logger's output waits for its replacement again (a logger "
            "killed while there was none lost what the container wrote until its "
            "replacement read: its LogCopierReplaced Event says so)",
            reason=EventReason.LOG_KEEPER_REPLACED,
        )
        entry.keeper_started_at = time.monotonic()
        if pidfd is None:  # ended already
            entry.keeper_quick_exits += 1
            self._spawn(entry, self._keep(entry, why, claimed=True))
        else:
            self._watch_keeper(entry, pidfd)

    def _drop(self, entry: _Watched) -> None:
        entry.done = True
        self._unwatch(entry)
        self._unwatch_keeper(entry)
        per_cell = self._watched.get(entry.key, {})
        if per_cell.get(entry.container) is entry:
            del per_cell[entry.container]
            if not per_cell:
                del self._watched[entry.key]

    def _exited(self, entry: _Watched) -> None:
        self._unwatch(entry)
        if entry.done:
            return
        lived = time.monotonic() - entry.started_at
        entry.quick_exits = entry.quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
        self._spawn(entry, self._replace(entry))

    async def _replace(self, entry: _Watched) -> None:
        if entry.quick_exits:
            await asyncio.sleep(min(2.0**entry.quick_exits, MAX_DELAY_SECONDS))
        task = entry.task
        if entry.done or task is None:
            return
        procs = self.copier_procs(entry.key[0]) if self.copier_procs is not None else ()
        process, (replacement, pidfd), task_alive, kept = await asyncio.to_thread(
            self._start, task, entry.log, entry.terminal, procs
        )
        if entry.done:
            if pidfd is not None:
                os.close(pidfd)
            return  # forgotten meanwhile: a new copier runs on, as the shim's would
        where = f"{'/'.join(entry.key)}/{entry.container}"
        copier = (
            f"the logger of container {entry.container}'s terminal"
            if entry.terminal is not None
            else f"the copier of container {entry.container}'s output into its log"
        )
        if process is None:
            if task_alive:
                self.replacements.labels("lost").inc()
                log.error("container %s: its output can no longer be logged", where)
                self._event(
                    entry,
                    f"{copier} exited and its output pipes could not be reopened: its output "
                    "is no longer logged; restart the cell to log it again",
                )
            elif kept:
                log.warning("container %s: its log copier exited after the container", where)
                self._event(
                    entry,
                    f"{copier} exited after the container ended, maybe before it logged all "
                    "the container wrote: the rest waits in the pipes, whose keeper logs it "
                    "once the task is deleted (when the cell restarts the container, or is "
                    "stopped or deleted)",
                )
            self._drop(entry)
            return
        self.replacements.labels("replaced").inc()
        self._reap_when_done(process)
        entry.started_at = time.monotonic()
        log.warning("container %s: its log copier exited; replaced (pid %d)", where, process.pid)
        self._event(
            entry,
            f"{copier} exited while the container ran; a new one logs its output from now on "
            + (
                "(its output waited meanwhile, none of it lost: the container's writes block "
                "once the pipes are full; what the killed one had logged last may be in the "
                "log twice)"
                if kept
                else "(no keeper held its pipes, killed or never started by an older "
                "kukeond: what the container wrote in between failed, EPIPE, and is not in "
                "the log)"
            ),
        )
        if pidfd is None:  # ended already
            entry.quick_exits += 1
            self._spawn(entry, self._replace(entry))
        else:
            self._watch(entry, pidfd, replacement)
        if not kept:
            await self._keep(entry, _NEVER_KEPT)

    def _reap_when_done(self, process: subprocess.Popen[bytes]) -> None:
        """A replacement is kukeond's child: waited for when it exits, watched or not (it
        ends with its task, after the cell may be forgotten here)."""
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(process.pid)  # not reaped yet, so its pid is still its own

        def reap() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._children.pop(process, None)
            process.poll()

        self._children[process] = pidfd
        loop.add_reader(pidfd, reap)

    def _start(
        self,
        task: ProcessId,
        log_file: Path,
        terminal: Terminal | None,
        cgroup_procs: Sequence[Path],
    ) -> tuple[subprocess.Popen[bytes] | None, tuple[ProcessId | None, int | None], bool, bool]:
        """A replacement, it and a pidfd watching it (None: it ended already), whether the
        task still runs, and whether a keeper held its output meanwhile (blocking: /proc reads
        and a fork)."""
        kept = find_copier(task.pid, log_file, keeper=True) is not None
        if not alive(task):
            return None, (None, None), False, kept
        process = start_replacement(task.pid, log_file, self.rotation, terminal, cgroup_procs)
        if process is None:
            return None, (None, None), alive(task), kept
        copier = identify(process.pid)
        return process, (copier, _pidfd_of(copier) if copier is not None else None), True, kept

    def _event(
        self,
        entry: _Watched,
        message: str,
        *,
        reason: EventReason = EventReason.LOG_COPIER_REPLACED,
    ) -> None:
        if self.recorder is not None:
            self.recorder.event(entry.cell, reason, message, type=EventType.WARNING)


def _start_keeper_process(
    task: ProcessId, entry: _Watched
) -> tuple[subprocess.Popen[bytes] | None, int | None]:
    """A keeper of the task's pipes and a pidfd watching it (blocking: /proc reads, a fork)."""
    if not alive(task):
        return None, None
    process = start_keeper(task.pid, entry.log, entry.terminal)
    if process is None:
        return None, None
    keeper = identify(process.pid)
    return process, (_pidfd_of(keeper) if keeper is not None else None)


def _join_realm(copier: ProcessId, cgroup_procs: Sequence[Path], where: str) -> None:
    """The running copier into its realm's copiers' cgroup, as a new one joins as it starts
    (``crilog``: these ``cgroup.procs`` files, v1 cpu and cpuacct only; not its keeper).
    Writing the pid of one already there changes nothing (blocking: cgroupfs writes)."""
    for procs in cgroup_procs:
        try:
            joining = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)  # no O_CREAT: cgroupfs only
            try:
                os.write(joining, b"%d" % copier.pid)
            finally:
                os.close(joining)
        except FileNotFoundError:  # the realm's cgroup is gone (or not made yet)
            log.debug("%s: no %s for its log copier (pid %d)", where, procs, copier.pid)
        except ProcessLookupError:  # it exited meanwhile: its watch sees that
            return
        except OSError as error:
            log.warning(
                "%s: its log copier (pid %d) not moved to %s: %s", where, copier.pid, procs, error
            )


def _copier_of(task_pid: int, log_file: Path) -> tuple[ProcessId, int] | None:
    """The copier of the ended task ``task_pid`` and a pidfd of it (blocking: /proc reads)."""
    copier = find_copier(task_pid, log_file)
    pidfd = _pidfd_of(copier) if copier is not None else None
    return (copier, pidfd) if copier is not None and pidfd is not None else None


def _pidfd_of(copier: ProcessId) -> int | None:
    """A pidfd of the copier, if it is still that process (None: it exited, or its pid is
    another's by now)."""
    try:
        pidfd = os.pidfd_open(copier.pid)
    except ProcessLookupError:
        return None
    if not alive(copier):  # exited, or its pid reused, between finding and opening
        os.close(pidfd)
        return None
    return pidfd
