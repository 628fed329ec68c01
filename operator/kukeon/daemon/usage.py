"""What the cells of this node use, read from their cgroups: for ``kukectl top`` and /metrics.

A cell's figures are its cgroup's (``<root>/<realm>/<space>/<stack>/<cell>``, whose counters
include every container below it), read through the cgroup driver, so cgroup v1 and v2
give the same answer: CPU time used (cumulative, seconds), memory (the working set, and
the usage the kernel charges, page cache included), tasks, and the memory limit. kukeon
puts limits on each container's own cgroup (``resources.memoryLimitBytes``, applied by
runc), not on the cell's, so a cell's limit is the sum of its running containers' limits
when every one of them has one, and none otherwise.

Every read goes through the driver's async methods (the file work runs in a thread),
at most ``concurrency`` cgroups at a time. :class:`ScrapeSampler` gives the metrics
collector, which prometheus-client calls synchronously from the thread rendering
``/metrics``, the same figures: it runs the reads on the daemon's event loop and waits for
them in that thread, reusing a reading younger than ``max_age`` so that several scrapes
close together read the cgroups once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kukeon.api import Cell, Kind, key_of
from kukeon.metrics.cache import DocumentView
from kukeon.metrics.usage import CellUsageSample
from kukeon.runtime.cgroups import CgroupDriver, CgroupError, CgroupPath, CgroupStats

log = logging.getLogger(__name__)

CellKey = tuple[str, str, str, str]
DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class Usage:
    """One cgroup's figures; ``None`` where its controller is missing there."""

    cpu_seconds: float | None
    memory_working_set_bytes: int | None
    memory_usage_bytes: int | None
    memory_limit_bytes: int | None
    pids: int | None

    @classmethod
    def of(cls, stats: CgroupStats) -> Usage:
        return cls(
            cpu_seconds=stats.cpu_usage_ns / 1e9 if stats.cpu_usage_ns is not None else None,
            memory_working_set_bytes=stats.memory_working_set_bytes,
            memory_usage_bytes=stats.memory_bytes,
            memory_limit_bytes=stats.memory_limit_bytes,
            pids=stats.pids,
        )

    @property
    def present(self) -> bool:
        """Whether the cgroup exists (an absent one reads as nothing at all)."""
        return any(
            value is not None for value in (self.cpu_seconds, self.memory_usage_bytes, self.pids)
        )


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    name: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class CellUsage:
    key: CellKey
    node: str
    cgroup: str
    """The cell's cgroup path inside every hierarchy (``/kukeon/realm/space/stack/cell``)."""
    timestamp: datetime
    """When the figures were read (after the reads)."""
    usage: Usage
    """The cell's own cgroup; its memory limit is the containers' (module docstring)."""
    containers: tuple[ContainerUsage, ...]
    """The containers that have a cgroup now (running), in the order asked."""


def _cell_limit(containers: Sequence[ContainerUsage]) -> int | None:
    limits = [container.usage.memory_limit_bytes for container in containers]
    if not limits or any(limit is None for limit in limits):
        return None
    return sum(limit for limit in limits if limit is not None)


class UsageReader:
    """Reads cells' figures through a cgroup driver (any version)."""

    def __init__(
        self,
        *,
        cgroups: CgroupDriver,
        node_name: str,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.cgroups = cgroups
        self.node_name = node_name
        self._slots = asyncio.Semaphore(concurrency)

    async def _read(self, path: CgroupPath) -> Usage | None:
        async with self._slots:
            try:
                stats = await self.cgroups.read_stats(path)
            except CgroupError as error:
                # Removed while being read (a cell stopping): as good as absent.
                log.debug("reading the usage of %s: %s", path, error)
                return None
        usage = Usage.of(stats)
        return usage if usage.present else None

    async def cell(self, key: CellKey, containers: Sequence[str]) -> CellUsage | None:
        """The figures of the cell ``key`` and of those of ``containers`` that run; ``None``
        when the cell has no cgroup on this node (it is not running here)."""
        path = CgroupPath(key)
        own, *found = await asyncio.gather(
            self._read(path), *(self._read(path.child(name)) for name in containers)
        )
        if own is None:
            return None
        running = tuple(
            ContainerUsage(name, usage)
            for name, usage in zip(containers, found, strict=True)
            if usage is not None
        )
        return CellUsage(
            key=key,
            node=self.node_name,
            cgroup=self.cgroups.cgroup_path(path),
            timestamp=datetime.now(UTC),
            usage=Usage(
                cpu_seconds=own.cpu_seconds,
                memory_working_set_bytes=own.memory_working_set_bytes,
                memory_usage_bytes=own.memory_usage_bytes,
                memory_limit_bytes=_cell_limit(running),
                pids=own.pids,
            ),
            containers=running,
        )

    async def cells(self, cells: Iterable[Cell]) -> list[CellUsage]:
        """The figures of each of ``cells`` that has a cgroup here, in the order given."""
        found = await asyncio.gather(
            *(
                self.cell(_cell_key(cell), [container.id for container in cell.spec.containers])
                for cell in cells
            )
        )
        return [usage for usage in found if usage is not None]


def _cell_key(cell: Cell) -> CellKey:
    realm, space, stack, name = key_of(cell)
    return (realm, space, stack, name)


def local_cells(cells: Iterable[object], node_name: str) -> list[Cell]:
    """The cells placed on ``node_name`` (``spec.nodeName``), the only ones it runs."""
    return [cell for cell in cells if isinstance(cell, Cell) and cell.spec.node_name == node_name]


def sample_of(usage: CellUsage) -> CellUsageSample:
    realm, space, stack, cell = usage.key
    figures = usage.usage
    return CellUsageSample(
        realm=realm,
        space=space,
        stack=stack,
        cell=cell,
        node=usage.node,
        cpu_seconds=figures.cpu_seconds,
        memory_bytes=figures.memory_working_set_bytes,
        memory_limit_bytes=figures.memory_limit_bytes,
        pids=figures.pids,
    )


class ScrapeSampler:
    """The metrics collector's source: this node's cells' figures, read at scrape time.

    Called from the thread that renders ``/metrics`` (never from the event loop, which
    must not wait for itself: there, while another scrape reads, and when the reads fail
    or take longer than ``timeout``, the last reading is returned).
    """

    def __init__(
        self,
        *,
        reader: UsageReader,
        cache: DocumentView,
        loop: asyncio.AbstractEventLoop,
        max_age: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        self._reader = reader
        self._cache = cache
        self._loop = loop
        self._max_age = max_age
        self._timeout = timeout
        self._lock = threading.Lock()
        self._last: list[CellUsageSample] = []
        self._read_at = float("-inf")

    async def _sample(self) -> list[CellUsageSample]:
        cells = local_cells(self._cache.documents(Kind.CELL), self._reader.node_name)
        return [sample_of(usage) for usage in await self._reader.cells(cells)]

    def __call__(self) -> Sequence[CellUsageSample]:
        # A scrape while another reads gets the last reading at once: waiting on the lock
        # would hold its worker thread, and scrapes at once held every thread of the
        # default executor while the reader waited for reads that need one (to_thread).
        if not self._lock.acquire(blocking=False):
            return self._still_here(self._last)
        try:
            return self._still_here(self._read())
        finally:
            self._lock.release()

    def _read(self) -> list[CellUsageSample]:
        if time.monotonic() - self._read_at < self._max_age:
            return self._last
        if _in_loop_thread(self._loop) or self._loop.is_closed():
            return self._last
        future = asyncio.run_coroutine_threadsafe(self._sample(), self._loop)
        try:
            self._last = future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            log.warning(
                "reading the cells' cgroups took over %gs; /metrics shows the last reading",
                self._timeout,
            )
            return self._last
        except Exception:
            log.exception("reading the cells' cgroups failed; /metrics shows the last reading")
            return self._last
        self._read_at = time.monotonic()
        return self._last

    def _still_here(self, samples: list[CellUsageSample]) -> list[CellUsageSample]:
        """A reading kept from before (the shared second, a failed read) never shows a cell
        deleted since: its series end at the next scrape, as the other cell series do."""
        here = local_cells(self._cache.documents(Kind.CELL), self._reader.node_name)
        keys = {_cell_key(cell) for cell in here}
        return [s for s in samples if (s.realm, s.space, s.stack, s.cell) in keys]


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
