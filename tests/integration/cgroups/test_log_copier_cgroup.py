"""A realm's log copiers' cgroup on this host's real hierarchies, with both drivers: a logger
(``crilog``) given its ``cgroup.procs`` files joins it before it copies (v1: the cpu and
cpuacct hierarchies only, its memory and pids staying where it started; v2: the one
hierarchy), its keeper stays where the logger started, and removing the realm removes the
cgroup, the logger in it killed first (rmdir fails while a process is in a cgroup).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from kukeon.runtime.cgroups import CgroupPath, CgroupV1Driver, CgroupV2Driver
from kukeon.runtime.cgroups.paths import LOG_COPIERS
from kukeon.runtime.containerd.crilog import logger_command
from kukeon.runtime.containerd.logkeeper import KEEPER_NAME
from tests.integration.cgroups.conftest import V1Setup, V2Setup, leftovers

pytestmark = pytest.mark.integration

REALM = CgroupPath(("realm",))


def _cgroups(pid: int) -> dict[str, str]:
    """The process's cgroup per hierarchy (its controllers, ``""`` for cgroup2)."""
    found: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        found[controllers] = path
    return found


def _keeper_of(logger: int) -> int:
    children = Path(f"/proc/{logger}/task/{logger}/children").read_text().split()
    [keeper] = [
        int(c) for c in children if Path(f"/proc/{c}/comm").read_text().strip() == KEEPER_NAME
    ]
    return keeper


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10.0
    while not await asyncio.to_thread(check):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within 10 s: {what}")
        await asyncio.sleep(0.02)


def _started(log: Path, read_end: int, procs: Sequence[Path]) -> subprocess.Popen[bytes]:
    command = logger_command(
        log, streams={read_end: "stdout"}, ready_fd=None, keeper=True, cgroup_procs=procs
    )
    return subprocess.Popen(command, pass_fds=(read_end,), stdin=subprocess.DEVNULL)


def _keeper_found(logger: int, found: list[int]) -> bool:
    with contextlib.suppress(ValueError, OSError):
        found.append(_keeper_of(logger))
    return bool(found)


@contextlib.asynccontextmanager
async def _logger(log: Path, procs: Sequence[Path]) -> AsyncIterator[tuple[int, int, int]]:
    """A logger of a pipe into ``log``, joining ``procs``: its pid, its keeper's, and the
    pipe's write end. Its keeper ends with the pipe, closed on the way out."""
    read_end, write_end = os.pipe()
    process = await asyncio.to_thread(_started, log, read_end, procs)
    os.close(read_end)
    keeper: list[int] = []
    try:
        await _until(lambda: _keeper_found(process.pid, keeper), "the logger forked its keeper")
        yield process.pid, keeper[0], write_end
    finally:
        os.close(write_end)  # the keeper's pipe hangs up: it ends
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await asyncio.to_thread(process.wait, 10)
        if keeper:
            ended = f"/proc/{keeper[0]}"
            await _until(lambda: not os.path.exists(ended), f"keeper {keeper[0]} ended")


async def _joined(pid: int, hierarchy: str, expected: str) -> None:
    await _until(lambda: _cgroups(pid).get(hierarchy) == expected, f"{pid} in {expected}")


async def _logged(log: Path, text: bytes) -> None:
    await _until(lambda: log.exists() and text in log.read_bytes(), f"{text!r} logged")


async def test_v1_a_logger_joins_its_realms_cpu_only(v1: V1Setup, tmp_path: Path) -> None:
    driver: CgroupV1Driver = v1.driver
    await driver.ensure(REALM)
    await driver.ensure_log_copiers("realm")
    procs = driver.log_copier_procs("realm")
    cpu = [h for h in driver.managed if h.controllers & {"cpu", "cpuacct"}]
    assert procs
    assert len(procs) == len(cpu)
    copiers = f"{v1.root}/realm/{LOG_COPIERS}"
    log = tmp_path / "c.log"
    async with _logger(log, procs) as (logger, keeper, pipe):
        started = _cgroups(keeper)  # where the shim would have started it
        os.write(pipe, b"a line\n")
        await _logged(log, b"a line")
        for hierarchy, path in _cgroups(logger).items():
            if set(hierarchy.split(",")) & {"cpu", "cpuacct"}:
                await _joined(logger, hierarchy, copiers)
            else:  # its memory and pids are not the realm's
                assert path == started[hierarchy], hierarchy
        assert _cgroups(keeper) == started
        removal = await driver.remove(REALM)
        assert logger in removal.killed
    assert leftovers(v1.mounts, v1.root + "/realm") == []


async def test_v2_a_logger_joins_its_realms_cgroup(v2: V2Setup, tmp_path: Path) -> None:
    driver: CgroupV2Driver = v2.driver
    await driver.ensure(REALM)
    await driver.ensure_log_copiers("realm")
    procs = driver.log_copier_procs("realm")
    assert procs == (driver.directory(REALM) / LOG_COPIERS / "cgroup.procs",)
    log = tmp_path / "c.log"
    async with _logger(log, procs) as (logger, keeper, pipe):
        os.write(pipe, b"a line\n")
        await _logged(log, b"a line")
        await _joined(logger, "", f"{v2.root}/realm/{LOG_COPIERS}")
        assert not _cgroups(keeper)[""].startswith(v2.root)
        removal = await driver.remove(REALM)
        assert logger in removal.killed
    assert not driver.directory(REALM).exists()


async def test_a_logger_whose_cgroup_is_missing_logs_all_the_same(
    v2: V2Setup, tmp_path: Path
) -> None:
    log = tmp_path / "c.log"
    procs = v2.driver.log_copier_procs("absent")
    async with _logger(log, procs) as (logger, _keeper, pipe):
        os.write(pipe, b"a line\n")
        await _logged(log, b"a line")
        assert not _cgroups(logger)[""].startswith(v2.root)
