"""``read_stats`` on this host's real hierarchies (kukectl top's figures), both drivers.

A real process is moved into a task leaf below a cell, then touches 24 MiB and uses 0.3 s
of CPU; the cell's figures (which include the leaf) must agree with the kernel's
files within 5 %, and CPU time read through the driver must fall between two reads of
the file. On a hybrid host the cgroup2 mount offers no memory or pids controller: the v2
driver then reports CPU only, which is what is asserted there.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.runtime.cgroups import CgroupLimits, CgroupPath, Delegation
from tests.integration.cgroups.conftest import V1Setup, V2Setup

pytestmark = pytest.mark.integration

CELL = CgroupPath.of("realm", "space", "stack", "cell")
TASK = CELL.child("task")
MiB = 1024 * 1024
# waits for a line, then touches 24 MiB and uses 0.3 s of CPU, says ok, waits again
PROGRAM = """
import sys, time
sys.stdin.readline()
held = b"x" * (24 << 20)
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
print("ok", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def worker() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _go(worker: subprocess.Popen[str]) -> None:
    assert worker.stdin is not None
    assert worker.stdout is not None
    worker.stdin.write("\n")
    worker.stdin.flush()
    assert worker.stdout.readline().strip() == "ok"


def _int(path: Path) -> int:
    return int(path.read_text())


def _keyed(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise AssertionError(f"{path} has no {key}")


def _close(value: int | None, expected: int) -> bool:
    return value is not None and abs(value - expected) <= 0.05 * expected


async def test_v1_cell_figures_agree_with_the_files(
    v1: V1Setup, worker: subprocess.Popen[str]
) -> None:
    driver = v1.driver
    await driver.ensure(CELL)
    await driver.ensure(TASK, limits=CgroupLimits(memory_max_bytes=256 * MiB))
    await driver.add_process(TASK, worker.pid)
    _go(worker)

    def directory(controller: str) -> Path:
        hierarchy = next(h for h in driver.managed if controller in h.controllers)
        return driver.directory(hierarchy, CELL)

    cpu_file = directory("cpuacct") / "cpuacct.usage"
    before = _int(cpu_file)
    stats = await driver.read_stats(CELL)
    after = _int(cpu_file)
    memory = directory("memory")
    usage = _int(memory / "memory.usage_in_bytes")
    inactive = _keyed(memory / "memory.stat", "total_inactive_file")
    assert stats.cpu_usage_ns is not None
    assert before <= stats.cpu_usage_ns <= after
    assert stats.cpu_usage_ns >= 0.25e9  # the 0.3 s of CPU used after the move
    assert _close(stats.memory_bytes, usage)
    assert _close(stats.memory_working_set_bytes, usage - inactive)
    assert stats.memory_working_set_bytes is not None
    assert stats.memory_working_set_bytes >= 24 * MiB
    assert stats.pids == _int(directory("pids") / "pids.current") >= 1
    # the cell is unlimited, its task leaf is not
    assert stats.memory_limit_bytes is None
    assert (await driver.read_stats(TASK)).memory_limit_bytes == 256 * MiB


async def test_v2_cell_figures_agree_with_the_files(
    v2: V2Setup, worker: subprocess.Popen[str]
) -> None:
    driver = v2.driver
    await driver.ensure(CELL)
    await driver.ensure(TASK, delegation=Delegation.NONE)
    await driver.add_process(TASK, worker.pid)
    _go(worker)
    cell = driver.directory(CELL)

    before = _keyed(cell / "cpu.stat", "usage_usec") * 1000
    stats = await driver.read_stats(CELL)
    after = _keyed(cell / "cpu.stat", "usage_usec") * 1000
    assert stats.cpu_usage_ns is not None
    assert before <= stats.cpu_usage_ns <= after
    assert stats.cpu_usage_ns >= 0.25e9
    if "memory" in v2.offered:
        usage = _int(cell / "memory.current")
        inactive = _keyed(cell / "memory.stat", "inactive_file")
        assert _close(stats.memory_bytes, usage)
        assert _close(stats.memory_working_set_bytes, usage - inactive)
        assert stats.memory_limit_bytes is None
    else:  # a hybrid host's cgroup2 mount: no memory controller to read
        assert stats.memory_bytes is None
        assert stats.memory_working_set_bytes is None
    if "pids" in v2.offered:
        assert stats.pids == _int(cell / "pids.current") >= 1
    else:
        assert stats.pids is None
