"""A cell's stop grace, waited out by no handler worker.

A stop (``desiredState: Stopped``, or a deletion's finalize) sends each task its stop
signal and then waits for the exits, up to the grace (``terminationGracePeriodSeconds``,
up to an hour), before it SIGKILLs what is left. That wait once held one of the
operator's handler workers for the whole grace: a realm's editor deleting cells that
ignore SIGTERM with an hour's grace held 12 of the 16 for the hour, and two realms all
of them (every other realm's new cells Pending). As the kubelet does, the wait is no
pass now: a pass signals, waits ``SETTLE_SECONDS`` at most (a process that heeds its
signal is gone by then: the stop ends in one pass) and ends with ``Requeue`` for the
rest of the grace; the task's exit (containerd's event) or the grace's end brings the
cell back, and that pass deletes the tasks, or SIGKILLs them first at the deadline.

A container replaced (``kukectl restart``, a changed spec) has its old task stopped the
same way before it is removed (``replacing``), and so has one dropped from the cell's spec
(``removing``): that pass still converges the others and writes the cell's status, and
ends with the sooner of its own wait (a crash loop's back-off) and the grace left
(``waited``).

A `StopEpisode` is what a stop under way remembers between its passes: the deadline and
the tasks signalled (so none is signalled twice). It is kept in memory and in the cell's
state directory (``stopping.json``), on the boot clock (``CLOCK_BOOTTIME``: no clock
step moves it, and a restarted kukeond reads the same clock): a kukeond restarted
mid-grace keeps the deadline and signals nobody again.

A delete may give its own grace (kubectl's ``--grace-period``: ``gracePeriodSeconds``,
recorded by the registry as ``metadata.deletionGracePeriodSeconds``); it wins over the
cell's ``terminationGracePeriodSeconds`` for that deletion. A second delete with a
shorter grace changes the cell's metadata, which runs its finalize at once: the
deadline is the earliest any pass's grace gives (a longer one never moves it later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal as signals
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from kukeon.api import AnyResource, Cell, key_of
from kukeon.concurrently import run_all
from kukeon.fileio import write_atomically
from kukeon.framework import Requeue
from kukeon.runtime.containerd.errors import TaskNotFoundError
from kukeon.runtime.containerd.stopsignal import container_stop_signal
from kukeon.runtime.containerd.tasks import ExitStatus

from .cellbuild import CellPlace
from .cellexec import CellExecutor
from .cellfailures import ContainersFailedError
from .cellfiles import CellFiles
from .cellplan import LIVE_TASK, ContainerPlan, Note, ObservedTask, RemoveContainer

log = logging.getLogger(__name__)

STOPPING_FILE = "stopping.json"
"""In the cell's state directory: the stop under way (`StopEpisode`)."""
STOPPING = "Stopping"
"""The reason of a pass that ends waiting out a stop's grace."""
SETTLE_SECONDS = 0.5
"""How long a stop's pass waits for the tasks it signalled: a process that heeds its
signal is gone by then, and its stop ends in that pass."""


def stop_grace(cell: Cell) -> int | None:
    """The grace a stop of ``cell`` gets: its deletion's, else its own; None: kukeond's."""
    deleting = cell.metadata.deletion_grace_period_seconds
    if cell.metadata.deletion_timestamp is not None and deleting is not None:
        return deleting
    return cell.spec.termination_grace_period_seconds


def boot_clock() -> float:
    """Seconds since the host booted: monotonic, and the same clock for every process."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(slots=True)
class StopEpisode:
    """A stop under way: when its grace ends (boot clock) and which tasks were signalled."""

    deadline: float = 0.0
    signalled: dict[str, int] = field(default_factory=dict)
    saved: str = ""
    """What ``stopping.json`` holds of it ("" before it is written)."""

    def remaining(self) -> float:
        return self.deadline - boot_clock()

    def was_signalled(self, name: str, pid: int) -> bool:
        return self.signalled.get(name) == pid

    def mark_signalled(self, name: str, pid: int) -> None:
        self.signalled[name] = pid

    def document(self) -> str:
        return json.dumps({"deadline": self.deadline, "signalled": self.signalled})


def _read(path: Path) -> StopEpisode | None:
    """The episode ``path`` holds; None when there is none (or it is unreadable: the stop
    then starts afresh, a full grace from now)."""
    try:
        text = path.read_text()
        document = json.loads(text)
        deadline = float(document["deadline"])
        signalled = {str(name): int(pid) for name, pid in document["signalled"].items()}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("%s unreadable (%s): the stop starts its grace afresh", path, error)
        return None
    return StopEpisode(deadline=deadline, signalled=signalled, saved=text)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not flushed to disk: a power loss ends the tasks with it.
    write_atomically(path, text, mode=0o640, durable=False)


class StopGraces:
    """The stops under way on this node, by cell key."""

    def __init__(self) -> None:
        self._episodes: dict[tuple[str, ...], StopEpisode] = {}
        self._checked: set[tuple[str, ...]] = set()
        """Cells whose file this process has looked for (``abandon``)."""

    async def stop(
        self,
        executor: CellExecutor,
        files: CellFiles,
        where: tuple[str, Iterable[str]],
        killing: Sequence[Note] = (),
    ) -> None:
        """One pass of the stop of the tasks ``where`` names (a containerd namespace and
        container ids): done when it returns; ``Requeue`` for the rest of the grace while
        a task still runs. ``killing``: said once, when the stop starts."""
        namespace, names = where
        episode = await self._episode(files, executor.stop_grace_seconds())
        if not episode.signalled and executor.note is not None:
            for note in killing:
                executor.note(note)
        try:
            left = await _stop_tasks(executor, namespace, list(names), episode)
        finally:
            await self._save(files, episode)
        if left is not None:
            raise Requeue(
                f"stopping: {left:.1f}s of the stop grace left", delay=left, reason=STOPPING
            )
        await self.end(files)

    async def replacing(
        self,
        executor: CellExecutor,
        place: CellPlace,
        plan: ContainerPlan,
        running: tuple[str, ObservedTask | None],
    ) -> None:
        """A container ``plan`` removes (a restart asked, a changed spec) has its task
        (``running``: its containerd id and what was observed of it) stopped first as a
        stop's: ``Requeue`` while its grace runs."""
        name, task = running
        removed = any(isinstance(action, RemoveContainer) for action in plan.actions)
        if removed and task is not None and task.status in LIVE_TASK:
            await self.stop(executor, place.files, (place.namespace, [name]))

    async def removing(
        self, executor: CellExecutor, place: CellPlace, keep: frozenset[str], listed: list[str]
    ) -> Requeue | None:
        """The cell's containers ``listed`` but not in ``keep`` (dropped from its spec) go:
        their tasks stopped as a stop's, the containers deleted once none runs. While one
        does, the ``Requeue`` for the grace left is returned, not raised: the pass goes on
        and raises it (`waited`) once the cell's status is written."""
        dropped = [name for name in listed if name not in keep]
        if not dropped:
            return None
        try:
            await self.stop(executor, place.files, (place.namespace, dropped))
        except Requeue as waiting:
            return waiting
        await executor.remove_all(place.namespace, place.key, found=dropped)
        return None

    async def _episode(self, files: CellFiles, grace: float) -> StopEpisode:
        """The cell's stop under way (from memory, else from its file), or a new one; its
        deadline no later than ``grace`` from now."""
        key = files.key
        episode = self._episodes.get(key)
        if episode is None:
            found = await asyncio.to_thread(_read, files.directory / STOPPING_FILE)
            episode = found or StopEpisode(deadline=boot_clock() + grace)
            self._episodes[key] = episode
            self._checked.add(key)
        episode.deadline = min(episode.deadline, boot_clock() + grace)
        return episode

    async def _save(self, files: CellFiles, episode: StopEpisode) -> None:
        text = episode.document()
        if text == episode.saved or not episode.signalled:
            return
        try:
            await asyncio.to_thread(_write, files.directory / STOPPING_FILE, text)
        except OSError as error:  # only a restart needs it: the stop goes on
            log.warning("cell %s: its stop not recorded: %s", "/".join(files.key), error)
            return
        episode.saved = text

    async def end(self, files: CellFiles) -> None:
        """The stop is over (or the cell is gone): nothing of it is kept."""
        self._episodes.pop(files.key, None)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread((files.directory / STOPPING_FILE).unlink)

    async def abandon(self, files: CellFiles) -> None:
        """The cell's ``desiredState: Running`` pass ended with no stop waiting: one left
        unfinished (a stop given up for a start) is over, so a later one waits its whole
        grace again. The file is looked for once per process (a stop left by the process
        before), then only after a stop here."""
        if files.key in self._episodes or files.key not in self._checked:
            self._checked.add(files.key)
            await self.end(files)

    def forget(self, key: tuple[str, ...]) -> None:
        """The cell is gone from this node."""
        self._episodes.pop(key, None)
        self._checked.discard(key)

    def changed(self, obj: AnyResource, deleted: bool) -> None:
        """An `Operator.on_change` listener of cells: a deleted cell is forgotten, also
        one that left this node with no finalize here (moved, or gone from etcd), whose
        key ``abandon`` kept."""
        if deleted and isinstance(obj, Cell):
            self.forget(key_of(obj))


async def waited(waiting: Requeue, finish: Awaitable[object]) -> NoReturn:
    """The end of a pass that ``waiting`` for a dropped container's stop (`removing`):
    ``finish`` (the status written) and then the sooner of its own wait and ``waiting``."""
    try:
        await finish
    except Requeue as own:
        raise own if own.delay <= waiting.delay else waiting from None
    except ContainersFailedError as failed:  # its Requeue (`retry`) comes by the deadline
        due = failed.wake_in
        failed.wake_in = waiting.delay if due is None else min(due, waiting.delay)
        raise
    raise waiting


async def _stop_tasks(
    executor: CellExecutor, namespace: str, names: Sequence[str], episode: StopEpisode
) -> float | None:
    """One pass of a stop of the tasks of ``names``: each running task not signalled yet
    gets its stop signal; those gone within ``SETTLE_SECONDS`` (or SIGKILLed at the
    grace's end) are deleted. None once every task is; else the seconds of grace left."""
    found = await asyncio.gather(*(executor.task(namespace, name) for name in names))
    tasks = executor.host.containerd.tasks(namespace)
    live = {
        name: task.pid
        for name, task in zip(names, found, strict=True)
        if task is not None and task.status in LIVE_TASK
    }
    # Waited for before the signal: an exit right after it is not missed.
    exits = {name: asyncio.ensure_future(tasks.wait(name)) for name in live}
    try:
        await run_all(
            _signal(executor, namespace, name, pid, episode)
            for name, pid in live.items()
            if episode.signalled.get(name) != pid
        )
        if exits and (left := episode.remaining()) > 0:
            await asyncio.wait(exits.values(), timeout=min(left, SETTLE_SECONDS))
        running = [name for name, exit in exits.items() if not exit.done()]
        if running and (left := episode.remaining()) > 0:
            return left
        await run_all(_kill(executor, namespace, name) for name in running)
        for name in running:
            await exits[name]
    finally:
        for exit in exits.values():
            exit.add_done_callback(_retrieved)
            exit.cancel()
    await run_all(
        _delete(executor, namespace, name)
        for name, task in zip(names, found, strict=True)
        if task is not None
    )
    return None


async def _signal(
    executor: CellExecutor, namespace: str, name: str, pid: int, episode: StopEpisode
) -> None:
    """The container's stop signal (its image's or its own, else SIGTERM) to its task."""
    signal = await container_stop_signal(executor.host.containerd, namespace, name)
    with contextlib.suppress(TaskNotFoundError):  # it has just ended
        await executor.host.containerd.tasks(namespace).kill(name, signal)
    episode.signalled[name] = pid


async def _kill(executor: CellExecutor, namespace: str, name: str) -> None:
    with contextlib.suppress(TaskNotFoundError):
        await executor.host.containerd.tasks(namespace).kill(name, signals.SIGKILL, all=True)


async def _delete(executor: CellExecutor, namespace: str, name: str) -> None:
    await executor.host.containerd.tasks(namespace).delete(name)


def _retrieved(done: asyncio.Future[ExitStatus]) -> None:
    """A wait's failure is no one's to say (the task went): never asyncio's "exception was
    never retrieved"."""
    if not done.cancelled():
        done.exception()
