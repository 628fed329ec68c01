"""A container's log copier SIGKILLed while it runs is replaced, and its output is logged
again: at once while kukeond runs (a pidfd wakes it), and at the cell's first pass when it
died while kukeond was down. Before, every later line was lost and the cell said Ready.

The `kukeond` fixture deletes the realm and sweeps the host after the test, passed or failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from kukeon.api import Cell, Event, Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.daemon.app import Daemon
from kukeon.processes import ProcessId
from kukeon.runtime.containerd.crilog import parse_lines
from kukeon.runtime.containerd.logcopier import find_copier
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

# A line on each stream every 50 ms, numbered.
TICKER = "i=0; while :; do echo out-$i; echo err-$i >&2; i=$((i+1)); usleep 50000; done"


def _replaced(k: Kukeond) -> float:
    """kukeond's count of replacements started (its /metrics counter)."""
    sample = k.daemon.metrics_registry.get_sample_value(
        "kukeon_log_copier_replacements_total", {"outcome": "replaced"}
    )
    return sample or 0.0


async def _running_ticker(k: Kukeond, name: str) -> tuple[tuple[str, ...], int, Path]:
    await k.apply(cell_doc(k, name, [container(k, "main", script=TICKER)]))
    cell = await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready", within=60)
    assert isinstance(cell, Cell)
    [status] = cell.status.containers
    assert status.pid is not None
    realm, space, stack, cell_name = cell_key(k, name)
    files = CellFiles(k.config.state_dir, (realm, space, stack, cell_name))
    return (realm, space, stack, cell_name), status.pid, files.log("main")


async def _copier_of(pid: int, log: Path) -> ProcessId:
    found = await asyncio.to_thread(find_copier, pid, log)
    assert found is not None, "no copier found for a running task"
    return found


def _numbers(log: Path, stream: str) -> list[int]:
    prefix = b"out-" if stream == "stdout" else b"err-"
    return [
        int(record.text[len(prefix) :])
        for record in parse_lines(log.read_bytes().splitlines())
        if record.stream == stream and record.text.startswith(prefix)
    ]


async def _until(check: Callable[[], bool], what: str, *, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if await asyncio.to_thread(check):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.1)


async def _logged_beyond(log: Path, stream: str, number: int, *, within: float = 20.0) -> None:
    await _until(
        lambda: any(n > number for n in _numbers(log, stream)),
        f"{stream} line {number} logged",
        within=within,
    )


async def _replaced_events(k: Kukeond, name: str, *, at_least: int) -> list[Event]:
    assert k.daemon.events is not None
    async with asyncio.timeout(20):
        while True:
            events = [
                e
                for e in (await k.daemon.events.list(k.realm)).items
                if e.involved_object.name == name and e.reason == "LogCopierReplaced"
            ]
            if sum(e.count for e in events) >= at_least:
                return events
            await asyncio.sleep(0.2)


async def _reaped(process: ProcessId, *, within: float = 20.0) -> None:
    """Exited and waited for: a zombie keeps its /proc entry."""
    await _until(
        lambda: not os.path.exists(f"/proc/{process.pid}"), f"{process} reaped", within=within
    )


async def test_a_killed_copier_is_replaced_while_kukeond_runs(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key, pid, log = await _running_ticker(k, "ticker")
    original = await _copier_of(pid, log)
    await _logged_beyond(log, "stdout", 5)

    os.kill(original.pid, signal.SIGKILL)
    last_before = max(_numbers(log, "stdout"))
    # Both streams are logged again, by a new copier of the same log file.
    await _logged_beyond(log, "stdout", last_before + 5)
    await _logged_beyond(log, "stderr", last_before + 5)
    replacement = await _copier_of(pid, log)
    assert replacement != original
    assert _replaced(k) == 1
    [event] = await _replaced_events(k, "ticker", at_least=1)
    assert event.type == "Warning"
    assert "main" in event.message

    # Killed again, replaced again.
    os.kill(replacement.pid, signal.SIGKILL)
    last_before = max(_numbers(log, "stdout"))
    await _logged_beyond(log, "stdout", last_before + 5)
    second = await _copier_of(pid, log)
    assert second not in (original, replacement)

    # The cell goes: the replacement ends with its task, and is waited for (no zombie).
    await k.registry.delete(Kind.CELL, key)
    await k.wait_gone(Kind.CELL, key)
    await _reaped(second)


async def test_a_copier_killed_while_kukeond_is_down_is_replaced_at_start(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    _, pid, log = await _running_ticker(k, "downtime")
    original = await _copier_of(pid, log)

    await k.daemon.stop()
    os.kill(original.pid, signal.SIGKILL)
    await asyncio.sleep(0.5)
    last_before = max(_numbers(log, "stdout"))
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry

    await _logged_beyond(log, "stdout", last_before + 5, within=60)
    replacement = await _copier_of(pid, log)
    assert replacement != original
    assert _replaced(k) == 1
    await _replaced_events(k, "downtime", at_least=1)


async def _exit_seen(k: Kukeond, name: str) -> Cell:
    """The cell as its container's exit is first reported."""
    cell = await k.wait_for(
        Kind.CELL,
        cell_key(k, name),
        until=lambda c: (
            isinstance(c, Cell) and any(s.exit_code is not None for s in c.status.containers)
        ),
        within=60,
    )
    assert isinstance(cell, Cell)
    return cell


async def _once(k: Kukeond, name: str, script: str) -> Path:
    """A cell whose one container runs ``script`` once; its log."""
    await k.apply(cell_doc(k, name, [container(k, "main", script=script, restartPolicy="never")]))
    realm, space, stack, cell = cell_key(k, name)
    return CellFiles(k.config.state_dir, (realm, space, stack, cell)).log("main")


def _texts(log: Path) -> list[tuple[str | None, bytes]]:
    return [(r.stream, r.text) for r in parse_lines(log.read_bytes().splitlines())]


async def test_a_last_line_without_its_end_is_logged_when_the_exit_is_reported(
    kukeond: Kukeond,
) -> None:
    """The shim holds a task's output pipes until the task is deleted: a container that
    ended and is not restarted had its last line without a newline missing from its log
    (and from its status message) until its cell was stopped or deleted."""
    k = kukeond
    await k.hierarchy()
    log = await _once(k, "noend", "echo first; printf 'error: no end' >&2; exit 3")
    [status] = (await _exit_seen(k, "noend")).status.containers
    assert status.exit_code == 3
    assert status.message == "error: no end"
    # Read as the exit is first seen: the log holds all the task wrote already.
    assert _texts(log) == [("stdout", b"first"), ("stderr", b"error: no end")]


async def test_a_replacements_last_line_without_its_end_is_logged_at_the_exit(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    script = "echo started; while [ ! -e /tmp/go ]; do usleep 50000; done; printf 'the end'"
    log = await _once(k, "noend-replaced", script)
    ready = await k.wait_for(Kind.CELL, cell_key(k, "noend-replaced"), state="Ready", within=60)
    assert isinstance(ready, Cell)
    [running] = ready.status.containers
    pid = running.pid
    assert pid is not None
    original = await _copier_of(pid, log)
    os.kill(original.pid, signal.SIGKILL)
    await _until(lambda: find_copier(pid, log) not in (None, original), "a replacement")
    # The task ends: /tmp/go made in its own root.
    await asyncio.to_thread(Path(f"/proc/{pid}/root/tmp/go").touch)
    await _exit_seen(k, "noend-replaced")
    assert _texts(log)[-1] == ("stdout", b"the end")
