"""The cells' usage as kukeond reads it: a cell's limit from its containers', only this
node's cells, and the scrape-time sampler that never waits on the event loop from it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from kukeon.api import Kind
from kukeon.daemon.usage import ScrapeSampler, UsageReader
from kukeon.metrics.cache import DocumentCache
from kukeon.runtime.cgroups import CgroupPath, CgroupStats
from tests.unit.metrics import documents as docs

MiB = 1024 * 1024


class FakeDriver:
    """``read_stats`` from a table by path; an absent path reads as nothing."""

    def __init__(self, stats: Mapping[tuple[str, ...], CgroupStats]) -> None:
        self.stats = stats
        self.reads: list[tuple[str, ...]] = []
        self.threads: set[int] = set()

    def cgroup_path(self, path: CgroupPath) -> str:
        return "/kukeon/" + str(path)

    async def read_stats(self, path: CgroupPath) -> CgroupStats:
        self.reads.append(path.parts)
        self.threads.add(threading.get_ident())
        return self.stats.get(path.parts, CgroupStats())


def _stats(memory: int, limit: int | None = None) -> CgroupStats:
    return CgroupStats(
        memory_bytes=memory,
        memory_working_set_bytes=memory // 2,
        cpu_usage_ns=3_000_000_000,
        pids=2,
        memory_limit_bytes=limit,
    )


CELL = ("r", "s", "k", "c")


def _reader(stats: Mapping[tuple[str, ...], CgroupStats]) -> tuple[FakeDriver, UsageReader]:
    driver = FakeDriver(stats)
    return driver, UsageReader(cgroups=driver, node_name="n1")  # type: ignore[arg-type]


async def test_cell_limit_is_the_sum_of_its_running_containers_limits() -> None:
    _, reader = _reader(
        {
            CELL: _stats(100 * MiB),
            (*CELL, "a"): _stats(60 * MiB, limit=64 * MiB),
            (*CELL, "b"): _stats(40 * MiB, limit=32 * MiB),
        }
    )
    usage = await reader.cell(CELL, ["a", "b", "stopped"])
    assert usage is not None
    assert usage.cgroup == "/kukeon/r/s/k/c"
    assert usage.node == "n1"
    assert usage.usage.memory_limit_bytes == 96 * MiB
    assert usage.usage.memory_working_set_bytes == 50 * MiB
    assert usage.usage.cpu_seconds == 3.0
    assert [container.name for container in usage.containers] == ["a", "b"]


async def test_one_unlimited_container_leaves_the_cell_unlimited() -> None:
    _, reader = _reader(
        {
            CELL: _stats(100 * MiB),
            (*CELL, "a"): _stats(60 * MiB, limit=64 * MiB),
            (*CELL, "b"): _stats(40 * MiB),
        }
    )
    usage = await reader.cell(CELL, ["a", "b"])
    assert usage is not None
    assert usage.usage.memory_limit_bytes is None
    _, no_containers = _reader({CELL: _stats(MiB)})
    alone = await no_containers.cell(CELL, ["a"])
    assert alone is not None
    assert alone.usage.memory_limit_bytes is None


async def test_a_cell_without_a_cgroup_has_no_usage() -> None:
    _, reader = _reader({})
    assert await reader.cell(CELL, ["a"]) is None


def _cache() -> DocumentCache:
    cache = DocumentCache()
    cache.replace(
        Kind.CELL,
        [
            docs.cell("r", "s", "k", "c", spec_node="n1"),
            docs.cell("r", "s", "k", "elsewhere", spec_node="n2"),
            docs.cell("r", "s", "k", "unplaced"),
        ],
    )
    return cache


async def test_sampler_reads_this_nodes_cells_on_the_loop_from_the_scrape_thread() -> None:
    stats: dict[tuple[str, ...], CgroupStats] = {
        CELL: _stats(10 * MiB),
        ("r", "s", "k", "elsewhere"): _stats(MiB),
        ("r", "s", "k", "unplaced"): _stats(MiB),
    }
    driver, reader = _reader(stats)
    sampler = ScrapeSampler(
        reader=reader, cache=_cache(), loop=asyncio.get_running_loop(), max_age=60
    )
    # On the loop itself it must not wait for the loop: the last reading (none yet).
    assert sampler() == []
    assert driver.reads == []

    samples = await asyncio.to_thread(sampler)
    assert [(s.cell, s.node, s.memory_bytes, s.pids) for s in samples] == [("c", "n1", 5 * MiB, 2)]
    assert driver.threads == {threading.get_ident()}  # the reads ran on the loop
    reads = len(driver.reads)
    # a second scrape within max_age reuses the reading
    assert await asyncio.to_thread(sampler) == samples
    assert len(driver.reads) == reads
    assert sampler() == samples  # and the loop gets the last one


async def test_sampler_keeps_the_last_reading_when_a_read_fails() -> None:
    driver, reader = _reader({CELL: _stats(10 * MiB)})
    sampler = ScrapeSampler(
        reader=reader, cache=_cache(), loop=asyncio.get_running_loop(), max_age=0
    )
    first = await asyncio.to_thread(sampler)
    assert len(first) == 1

    async def broken(path: CgroupPath) -> CgroupStats:
        raise RuntimeError("boom")

    driver.read_stats = broken  # type: ignore[method-assign]
    assert await asyncio.to_thread(sampler) == first


class ThreadedDriver(FakeDriver):
    """Reads in a worker thread of the loop's default executor, as the cgroup drivers do."""

    async def read_stats(self, path: CgroupPath) -> CgroupStats:
        self.reads.append(path.parts)
        return await asyncio.to_thread(self.stats.get, path.parts, CgroupStats())


async def test_scrapes_at_once_do_not_take_every_worker_thread_from_the_reads() -> None:
    """Each scrape renders in a worker thread and the sampler's reads need one too: scrapes
    waiting on the sampler's lock held every thread of the default executor while the one
    holding it waited for its reads, so nothing that ran in a worker thread (the node's
    heartbeat, every cgroup read) went on until the reads timed out (8 concurrent /metrics
    requests stalled kukeond's worker threads 30 s on 2 cores)."""
    loop = asyncio.get_running_loop()
    workers = ThreadPoolExecutor(max_workers=4)
    loop.set_default_executor(workers)
    driver = ThreadedDriver({CELL: _stats(10 * MiB)})
    reader = UsageReader(cgroups=driver, node_name="n1")  # type: ignore[arg-type]
    sampler = ScrapeSampler(reader=reader, cache=_cache(), loop=loop, max_age=0, timeout=5)
    started = time.monotonic()
    readings = await asyncio.gather(*(asyncio.to_thread(sampler) for _ in range(12)))
    assert time.monotonic() - started < 2.5
    assert any(len(reading) == 1 for reading in readings)
    # and the next scrape reads again, within its time
    assert len(await asyncio.to_thread(sampler)) == 1
    assert time.monotonic() - started < 2.5
