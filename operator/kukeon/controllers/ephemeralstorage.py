"""Each running container's ephemeral storage measured against its limit, as the kubelet's.

A container whose effective spec has ``resources.ephemeralStorageLimitBytes`` is watched
while its task runs (``sync``, from the cell's pass through the probe manager). Every
``period`` seconds one supervised loop asks containerd what each watched container's
writable layer takes: ``Snapshots.Usage`` of its rootfs snapshot, which for an active
overlay snapshot walks the upper directory in containerd (blocks allocated, hard links
once), the same figure as ``du`` on that directory, so kukeond walks no layer itself. The
containers are measured one after the other: a node with many idle containers pays one
short gRPC call each per period, and a huge upper directory delays the rest rather than
loading the disk with several walks at once.

Beside the writable layer, kukeon gives one writable directory of its own: the tty state
directory of an attachable container with ``tty.onInit`` or ``tty.logFile``
(``<state-dir>/cells/.../tty/<container>/run``, the container's ``/run/kukeon/tty``, on the
host's disk). It is counted too, walked by kukeond (``runtime.dirusage``), as the kubelet
counts a pod's emptyDir volumes: uncounted, a container held to its limit wrote as much as
it liked there, into the filesystem of kukeond's state (and of its embedded etcd). Other
volumes are the host's paths, tmpfs counts against the container's memory, and the
container's log is bounded by its own rotation.

containerd's walk goes by path and fails on a layer nested deeper than ``PATH_MAX`` ("file
name too long"), every time: such a layer was never measured, so never evicted, whatever
it held. When containerd cannot measure a layer whose snapshot is there, kukeond walks the
upper directory itself; a tree it will not walk (``dirusage.MAX_DEPTH`` levels) is evicted
as over the limit, since it cannot be shown to be within it.

A limit of L bytes also bounds the inodes the same places hold (files, directories, links,
device nodes, overlay whiteouts): at most ``L // BYTES_PER_INODE``, each inode counted as
one 4 KiB block. An empty file takes no data block, so bytes alone let a container held to
1 MiB create millions of empty files and exhaust the inodes of the node's filesystem
(containerd's root, kukeond's state), after which nothing on the host can create a file;
a file with data takes a block anyway, so a container within its byte limit with files of
a block or more is within its inode bound too. An image's own files are in the lower
layers and do not count; containerd's ``Snapshots.Usage`` gives the layer's inodes beside
its size, ``runtime.dirusage`` counts them too.

A container over its limit is evicted as the kubelet evicts: a Warning Event ``Evicted``
naming the container, its usage and its limit, its task stopped (its stop signal, the
cell's grace, SIGKILL), and the stop remembered as a `ProbeKill` with reason ``Evicted``,
so the next pass reports that exit and does not restart it whatever its restart policy:
restarted, it would find its layer as full as it left it (the snapshot is kept; a
restart of the task is not a new container) and go on writing. ``kukectl restart`` makes
a fresh container, its layer empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kukeon.api import Cell, EventReason, EventType, Kind
from kukeon.framework import ConvergeGate, EventRecorder
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdError, NotFoundError
from kukeon.runtime.containerd.snapshots import Mount
from kukeon.runtime.containerd.stopsignal import container_stop_signal
from kukeon.runtime.containerd.ttyinit import STATE_MOUNT, wrapper_needed
from kukeon.runtime.dirusage import MAX_DEPTH, TreeTooDeepError, Usage, directory_usage
from kukeon.runtime.hostthreads import run_on_host_thread

from .cellexits import EVICTED
from .cellfiles import CellFiles
from .cellplan import ProbeKill

if TYPE_CHECKING:
    from .probing import RunningContainer

log = logging.getLogger(__name__)

CellKey = tuple[str, str, str, str]
Trigger = Callable[[Kind, tuple[str, ...]], bool]

PERIOD_SECONDS = 10.0
"""How often the writable layers are measured: the kubelet's eviction manager's period. A
container may write past its limit for up to this long (at the disk's speed) before it
is stopped."""


LIMIT_SOURCES = (
    "resources.ephemeralStorageLimitBytes, else its space's default or its realm's "
    "spec.limits.containerEphemeralStorageBytes"
)
BYTES_PER_INODE = 4096
"""A limit of L bytes allows L // BYTES_PER_INODE inodes: each counted as one block."""
WRITABLE_LAYER = "its writable layer"
WITH_TTY_STATE = f"its writable layer and its tty state directory {STATE_MOUNT}"


def eviction_message(container: str, usage: int, limit: int, counted: str = WRITABLE_LAYER) -> str:
    """The status message and Event of an eviction: the container, its usage (``counted``
    says of what), its limit."""
    return (
        f"container {container} used {usage} bytes of ephemeral storage ({counted}), over "
        f"its limit of {limit} bytes ({LIMIT_SOURCES})"
    )


def inode_eviction_message(
    container: str, inodes: int, limit: int, counted: str = WRITABLE_LAYER
) -> str:
    """The eviction's message for a container over the inodes its limit allows."""
    return (
        f"container {container} held {inodes} inodes (files, directories, links) in "
        f"{counted}, over the {inode_limit(limit)} its ephemeral-storage limit of {limit} "
        f"bytes allows (one per {BYTES_PER_INODE} bytes; {LIMIT_SOURCES})"
    )


def unmeasurable_message(container: str, limit: int, counted: str = WRITABLE_LAYER) -> str:
    """The eviction's message for a container whose usage cannot be walked."""
    return (
        f"container {container} nests directories more than {MAX_DEPTH} levels deep in "
        f"{counted}, which kukeond does not walk: its ephemeral storage cannot be held to "
        f"its limit of {limit} bytes ({LIMIT_SOURCES})"
    )


def upper_directory(mounts: Iterable[Mount]) -> Path | None:
    """The directory an active snapshot's writes go to: an overlay's ``upperdir``, or the
    directory of a bind (a snapshot with no parent); None for any other shape."""
    for mount in mounts:
        if mount.type == "overlay":
            for option in mount.options:
                key, _, value = option.partition("=")
                if key == "upperdir" and value:
                    return Path(value)
        elif mount.type == "bind" and mount.source:
            return Path(mount.source)
    return None


def over_limit(usage: int, limit: int) -> bool:
    """Whether a container is evicted: past its limit (at the limit is within it)."""
    return usage > limit


def inode_limit(limit: int) -> int:
    """The inodes a limit of ``limit`` bytes allows (each counted as one block)."""
    return limit // BYTES_PER_INODE


def bound(limit: int) -> Usage:
    """The bytes and inodes a container held to ``limit`` bytes may take."""
    return Usage(limit, inode_limit(limit))


def over_bound(usage: Usage, limit: int) -> bool:
    """Whether a container is evicted: past its limit in bytes or in inodes."""
    return over_limit(usage.size_bytes, limit) or usage.inodes > inode_limit(limit)


def verdict(container: str, usage: Usage, limit: int, counted: str = WRITABLE_LAYER) -> str | None:
    """The eviction's message of a container that took ``usage``; None within its bound."""
    if over_limit(usage.size_bytes, limit):
        return eviction_message(container, usage.size_bytes, limit, counted)
    if usage.inodes > inode_limit(limit):
        return inode_eviction_message(container, usage.inodes, limit, counted)
    return None


@dataclass
class _Watched:
    cell: Cell
    namespace: str
    containerd_id: str
    pid: int
    limit: int
    snapshot_key: str | None = None
    """The container's rootfs snapshot, read from containerd once per task."""
    tty_state: Path | None = None
    """Its tty state directory on the host, counted too (None: it has none)."""

    @property
    def counted(self) -> str:
        return WRITABLE_LAYER if self.tty_state is None else WITH_TTY_STATE


class StorageLimits:
    """The containers with an ephemeral-storage limit that run here, measured each period."""

    def __init__(
        self,
        *,
        containerd: Callable[[], ContainerdClient],
        trigger: Trigger,
        stop_grace_seconds: float,
        recorder: EventRecorder | None = None,
        period: float = PERIOD_SECONDS,
        state_dir: Path | None = None,
    ) -> None:
        self._containerd = containerd
        self.state_dir = state_dir
        """kukeond's state directory, where the tty state directories lie (None: not counted)."""
        self.trigger = trigger
        self.stop_grace_seconds = stop_grace_seconds
        self.recorder = recorder
        self.period = period
        self.gate = ConvergeGate()
        """No measuring pass (it evicts) while closed."""
        self._watched: dict[tuple[CellKey, str], _Watched] = {}
        self._kills: dict[tuple[CellKey, str], ProbeKill] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def sync(
        self,
        cell: Cell,
        key: CellKey,
        *,
        namespace: str,
        running: Iterable[RunningContainer],
        held: Collection[str] = (),
    ) -> None:
        """Watch exactly these tasks of the cell (those with a limit) from now on, and the
        ``held`` containers' as they were."""
        wanted: set[str] = set()
        for item in running:
            slot = (key, item.spec.id)
            kill = self._kills.get(slot)
            if kill is not None and kill.pid != item.pid:
                del self._kills[slot]  # a new task: the evicted one's exit was reported
            limit = item.spec.resources.ephemeral_storage_limit_bytes if item.spec.resources else 0
            if not limit or slot in self._kills:
                continue
            wanted.add(item.spec.id)
            known = self._watched.get(slot)
            tty_state = self._tty_state(key, item)
            if known is None or known.pid != item.pid or known.containerd_id != item.containerd_id:
                self._watched[slot] = _Watched(
                    cell, namespace, item.containerd_id, item.pid, limit, tty_state=tty_state
                )
            else:
                known.cell, known.limit, known.tty_state = cell, limit, tty_state
        for slot in [s for s in self._watched if s[0] == key and s[1] not in wanted | {*held}]:
            del self._watched[slot]

    def _tty_state(self, key: CellKey, item: RunningContainer) -> Path | None:
        """The container's tty state directory when it has one (as the cell's build makes
        it: an attachable container whose tty runs under the wrapper)."""
        spec = item.spec
        if self.state_dir is None or not (spec.attachable and wrapper_needed(spec.tty)):
            return None
        return CellFiles(self.state_dir, key).tty_state(spec.id)

    def kill(self, key: CellKey, container: str) -> ProbeKill | None:
        return self._kills.get((key, container))

    def forget(self, key: CellKey) -> None:
        for table in (self._watched, self._kills):
            for slot in [s for s in table if s[0] == key]:
                del table[slot]

    async def run(self) -> None:
        """The measuring loop (supervised by kukeond's task supervisor)."""
        while True:
            await asyncio.sleep(self.period)
            await self.gate.wait_open()
            await self.measure()

    async def measure(self) -> list[str]:
        """One pass over the watched containers; the containerd ids it evicted."""
        evicted: list[str] = []
        for slot, watched in list(self._watched.items()):
            try:
                usage = await self._usage(watched)
            except ContainerdError as error:  # gone meanwhile: its cell's pass will say
                log.debug("measuring %s: %s", watched.containerd_id, error)
                continue
            except OSError as error:  # the walk's: measured again at the next pass
                log.warning("measuring %s: %s", watched.containerd_id, error)
                continue
            except TreeTooDeepError:
                message = unmeasurable_message(slot[1], watched.limit, watched.counted)
            else:
                found = verdict(slot[1], usage, watched.limit, watched.counted)
                if found is None:
                    continue
                message = found
            if self._watched.get(slot) is not watched:
                continue
            self._evict(slot, watched, message)
            evicted.append(watched.containerd_id)
        return evicted

    async def _usage(self, watched: _Watched) -> Usage:
        """Its writable layer, and its tty state directory when it has one."""
        layer = await self._layer_usage(watched)
        if watched.tty_state is None or over_bound(layer, watched.limit):
            return layer
        allowed = bound(watched.limit)
        room = Usage(allowed.size_bytes - layer.size_bytes, allowed.inodes - layer.inodes)
        tty = await run_on_host_thread(directory_usage, watched.tty_state, stop_above=room)
        return layer.plus(tty)

    async def _layer_usage(self, watched: _Watched) -> Usage:
        client = self._containerd()
        if watched.snapshot_key is None:
            record = await client.containers(watched.namespace).get(watched.containerd_id)
            watched.snapshot_key = record.snapshot_key
        snapshots = client.snapshots(watched.namespace)
        try:
            measured = await snapshots.usage(watched.snapshot_key)
            return Usage(measured.size_bytes, measured.inodes)
        except NotFoundError:
            raise
        except ContainerdError as error:
            # containerd's walk by path fails on a tree deeper than PATH_MAX at every pass.
            upper = upper_directory(await snapshots.mounts(watched.snapshot_key))
            if upper is None:
                raise
            log.debug("containerd cannot measure %s (%s): walked", watched.containerd_id, error)
        return await run_on_host_thread(directory_usage, upper, stop_above=bound(watched.limit))

    def _evict(self, slot: tuple[CellKey, str], watched: _Watched, message: str) -> None:
        self._kills[slot] = ProbeKill(watched.pid, EVICTED, message)
        del self._watched[slot]
        log.info("evicting %s: %s", watched.containerd_id, message)
        if self.recorder is not None:
            self.recorder.event(watched.cell, EventReason.EVICTED, message, type=EventType.WARNING)
        # Stopped beside the loop: a grace period of its own must not delay the others'
        # measurements.
        task = asyncio.create_task(self._stop(slot[0], watched), name="kukeon-evict")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop(self, key: CellKey, watched: _Watched) -> None:
        asked = watched.cell.spec.termination_grace_period_seconds
        grace = self.stop_grace_seconds if asked is None else float(asked)
        tasks = self._containerd().tasks(watched.namespace)
        try:
            current = await tasks.get(watched.containerd_id)
            if current.pid == watched.pid:  # never a newer task of the same container
                stop = await container_stop_signal(
                    self._containerd(), watched.namespace, watched.containerd_id
                )
                await tasks.stop(watched.containerd_id, grace_period=grace, signal=stop)
        except ContainerdError as error:
            log.warning("stopping %s over its storage limit: %s", watched.containerd_id, error)
        finally:
            self.trigger(Kind.CELL, key)

    async def settle(self) -> None:
        """Wait for the stops under way (tests, and ``close``)."""
        if self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._stopping):
            task.cancel()
        await self.settle()
        self._watched.clear()
