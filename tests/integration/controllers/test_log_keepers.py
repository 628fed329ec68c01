"""The keeper of a container's output pipes (the reader that never reads, which lets a
killed logger's output wait for its replacement) is itself kept: killed (kill -9), kukeond
starts a new one; missing because an older kukeond started the task, kukeond starts one. A
logger killed afterwards loses no line (real containerd, runc and shim).

Before: a killed keeper was never replaced, and a task started without one never got one,
so the next kill of its logger left the pipes without a reader: a plain container's writes
failed (EPIPE) until the replacement read, and those lines were lost; a terminal's output
stopped being logged for good.

The `kukeond` fixture deletes the realm and sweeps the host after the test, passed or failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, DesiredCellState, Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.daemon.app import Daemon
from kukeon.processes import ProcessId, identify
from kukeon.runtime.containerd import crilog
from kukeon.runtime.containerd.crilog import parse_lines, rotated_logs
from kukeon.runtime.containerd.logcopier import find_copier
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, update_cell

pytestmark = pytest.mark.integration

# Bursts of 100 numbered lines 100 ms apart, for as long as the test runs.
COUNTER = "i=0; while :; do echo $i; i=$((i+1)); [ $((i % 100)) -eq 0 ] && usleep 100000; done"


def _numbers(log: Path, *, terminal: bool) -> list[int]:
    data = b"".join(path.read_bytes() for path in [*rotated_logs(log), log])
    if terminal:  # the last line may be on its way still
        texts = [line.rstrip(b"\r\n") for line in data.splitlines(keepends=True)[:-1]]
    else:
        texts = [record.text for record in parse_lines(data.splitlines())]
    return [int(text) for text in texts if text.isdigit()]


def _shim_reads(pid: int, log: Path) -> bool:
    """Whether the task's shim still holds a read end of the pipe its logger reads on fd 3
    (stdout, or a terminal's output): containerd's shim keeps those it handed its logger
    until Go's garbage collector closes them, some two minutes after the start, and while
    it does nothing here can be lost."""
    shim = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    logger = find_copier(pid, log)
    assert logger is not None
    pipe = os.stat(f"/proc/{logger.pid}/fd/3").st_ino
    for fd in Path(f"/proc/{shim}/fd").iterdir():
        try:
            if os.stat(fd).st_ino != pipe:
                continue
            flags = Path(f"/proc/{shim}/fdinfo/{fd.name}").read_text().split("flags:")[1]
        except (FileNotFoundError, IndexError):
            continue
        if int(flags.split()[0], 8) & os.O_ACCMODE == os.O_RDONLY:
            return True
    return False


async def _found(
    check: Callable[[], ProcessId | None], what: str, *, within: float = 20.0
) -> ProcessId | None:
    """What ``check`` finds within the time; None (said by the caller) if nothing."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        found = await asyncio.to_thread(check)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    print(f"not within {within}s: {what}")
    return None


async def _start(k: Kukeond, name: str, *, terminal: bool) -> tuple[int, Path]:
    """A running counter whose shim no longer reads its pipes (as after minutes)."""
    fields: dict[str, object] = {"attachable": True} if terminal else {}
    await k.apply(cell_doc(k, name, [container(k, "main", script=COUNTER, **fields)]))
    cell = await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready", within=60)
    assert isinstance(cell, Cell)
    [status] = cell.status.containers
    assert status.pid is not None
    log = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", name)).log("main")
    deadline = asyncio.get_running_loop().time() + 240
    while await asyncio.to_thread(_shim_reads, status.pid, log):
        assert asyncio.get_running_loop().time() < deadline, "the shim reads on"
        await asyncio.sleep(1.0)
    return status.pid, log


async def _kill_the_logger_then_count(
    k: Kukeond, name: str, pid: int, log: Path, *, terminal: bool
) -> list[int]:
    """Kills the task's logger while kukeond is down, so that the container writes for a
    second with no logger, then starts kukeond again (which replaces the logger); the
    lines never logged (numbers missing below the last logged a few seconds later); fails
    if the output stops being logged."""
    logger = find_copier(pid, log)
    assert logger is not None
    await k.daemon.stop()
    os.kill(logger.pid, signal.SIGKILL)
    await asyncio.sleep(1.0)  # what the container writes now waits for a replacement
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry
    written = max(await asyncio.to_thread(_numbers, log, terminal=terminal)) + 3000
    deadline = asyncio.get_running_loop().time() + 60
    while max(await asyncio.to_thread(_numbers, log, terminal=terminal)) < written:
        if asyncio.get_running_loop().time() > deadline:
            break  # a terminal whose output is no longer logged: counted below
        await asyncio.sleep(0.2)
    numbers = await asyncio.to_thread(_numbers, log, terminal=terminal)
    assert max(numbers) >= written, f"no longer logged after line {max(numbers)}"
    return sorted(set(range(max(numbers))) - set(numbers))


async def _nothing_lost_and_said(
    k: Kukeond,
    name: str,
    pid: int,
    log: Path,
    *,
    terminal: bool,
    keeper: ProcessId | None,
    says: str,
) -> None:
    """The logger killed (kukeond down a second) loses no line, a keeper having been
    started, which a Warning says."""
    missing = await _kill_the_logger_then_count(k, name, pid, log, terminal=terminal)
    assert not missing, f"{len(missing)} lines lost, first {missing[:5]}"
    assert keeper is not None, "no keeper was started"
    [event] = await _events(k, name, "LogKeeperReplaced")
    assert event.type == "Warning"
    assert says in event.message


async def _events(k: Kukeond, name: str, reason: str) -> list[Any]:
    assert k.daemon.events is not None
    async with asyncio.timeout(20):
        while True:
            events = [
                e
                for e in (await k.daemon.events.list(k.realm)).items
                if e.involved_object.name == name and e.reason == reason
            ]
            if events:
                return events
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
async def test_a_killed_keeper_is_replaced_and_the_next_logger_kill_loses_nothing(
    kukeond: Kukeond, terminal: bool
) -> None:
    k = kukeond
    await k.hierarchy()
    name = "term" if terminal else "plain"
    pid, log = await _start(k, name, terminal=terminal)
    keeper = find_copier(pid, log, keeper=True)
    assert keeper is not None

    os.kill(keeper.pid, signal.SIGKILL)
    again = await _found(
        lambda: found if (found := find_copier(pid, log, keeper=True)) != keeper else None,
        "a new keeper",
    )
    await _nothing_lost_and_said(
        k, name, pid, log, terminal=terminal, keeper=again, says="was killed"
    )


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
async def test_a_task_started_without_a_keeper_gets_one(
    kukeond: Kukeond, terminal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an older kukeond started: a shim's logger that forks no keeper.
    command = crilog.logger_command

    def without_keeper(*args: Any, **kwargs: Any) -> list[str]:
        return command(*args, **{**kwargs, "keeper": False})

    monkeypatch.setattr(crilog, "logger_command", without_keeper)
    k = kukeond
    await k.hierarchy()
    name = "term" if terminal else "plain"
    pid, log = await _start(k, name, terminal=terminal)
    monkeypatch.undo()

    keeper = await _found(lambda: find_copier(pid, log, keeper=True), "a keeper")
    await _nothing_lost_and_said(
        k, name, pid, log, terminal=terminal, keeper=keeper, says="older kukeond"
    )


async def test_a_logger_killed_after_its_task_ended_leaves_nothing_unlogged(
    kukeond: Kukeond,
) -> None:
    """A logger still at work when its task is deleted is killed by the shim 12 s later
    (here: stopped, as a slow one); what the pipes held is logged by its keeper."""
    k = kukeond
    await k.hierarchy()
    script = "sleep 3; i=0; while [ $i -lt 6000 ]; do echo $i; i=$((i+1)); done"
    await k.apply(cell_doc(k, "ends", [container(k, "main", script=script)]))
    key = cell_key(k, "ends")
    cell = await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    assert isinstance(cell, Cell)
    [status] = cell.status.containers
    assert status.pid is not None
    log = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", "ends")).log("main")
    logger = find_copier(status.pid, log)
    assert logger is not None
    os.kill(logger.pid, signal.SIGSTOP)
    async with asyncio.timeout(30):  # it wrote its lines (some 29 KB: into the pipe) and ended
        while identify(status.pid) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    await update_cell(k, key, spec={"desired_state": DesiredCellState.STOPPED})
    await k.wait_for(Kind.CELL, key, state="Stopped", within=60)
    try:
        async with asyncio.timeout(40):  # the shim's 12 s, then the keeper's
            while len(set(await asyncio.to_thread(_numbers, log, terminal=False))) < 6000:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    except TimeoutError:
        numbers = await asyncio.to_thread(_numbers, log, terminal=False)
        raise AssertionError(f"{6000 - len(set(numbers))} of 6000 lines not logged") from None
    assert identify(logger.pid) is None, "the shim did not kill its logger"
