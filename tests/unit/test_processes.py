"""kukeon.processes.run_program: a program never outlives a caller that was cancelled or
gave up waiting, nor do the processes it started. runs_as: a process's user ids."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kukeon.processes import run_program, runs_as

SLEEP_60 = f"{sys.executable} -c 'import time; time.sleep(60)'"


def _pids_with(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (a zombie's is empty: not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _exists(pid: int) -> bool:
    """Whether ``pid`` is there, zombie or not."""
    return Path(f"/proc/{pid}").exists()


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition`` (what /proc shows has no event to wait on)."""
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def test_runs_to_the_end_with_stdin_and_environment() -> None:
    finished = await run_program(
        ["sh", "-c", 'cat; echo "$WHO" >&2; exit 3'], stdin=b"in", env={"WHO": "me"}
    )
    assert (finished.returncode, finished.stdout, finished.stderr) == (3, b"in", b"me\n")


async def test_a_missing_program_is_file_not_found() -> None:
    with pytest.raises(FileNotFoundError):
        await run_program([f"/nonexistent/{secrets.token_hex(4)}"])


async def test_cancelling_the_caller_kills_and_reaps_the_program_and_its_children() -> None:
    marker = f"kukeon-test-{secrets.token_hex(6)}"
    # A shell waiting for a `sleep 60` of its own, as a CNI plugin waits for iptables.
    script = f"{SLEEP_60} {marker}-child; true"
    caller = asyncio.ensure_future(run_program(["sh", "-c", script, f"{marker}-shell"]))
    await _until(lambda: len(_pids_with(marker)) == 2)
    pids = _pids_with(marker)
    shell = next(pid for pid in pids if f"{marker}-shell".encode() in _cmdline(pid))

    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller

    # The program itself is gone, not even a zombie, when the cancellation reaches us.
    assert not _exists(shell)
    # Its child got the same SIGKILL (its process group); init reaps it.
    await _until(lambda: not any(_exists(pid) for pid in pids), 5.0)


async def test_a_timeout_around_it_kills_the_program() -> None:
    marker = f"kukeon-test-{secrets.token_hex(6)}"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await run_program(["sh", "-c", SLEEP_60, marker])
    assert _pids_with(marker) == []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_runs_as_reads_every_user_id_of_the_process() -> None:
    me = os.getpid()
    assert runs_as(me, os.geteuid())
    assert not runs_as(me, os.geteuid() + 1)
    assert not runs_as(2**22 + 1, os.geteuid())  # above any pid_max: no such process


async def test_started_is_told_the_pid_before_the_program_ends() -> None:
    """``nfttable`` tells its own nft's kernel notices from others' by this pid."""
    seen: list[int] = []
    finished = await run_program(["sh", "-c", "echo $$"], started=lambda pid: seen.append(pid))
    assert seen == [int(finished.stdout)]
