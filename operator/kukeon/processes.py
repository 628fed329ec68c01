"""Running a program to its end, never leaving it behind: for every layer.

A CNI plugin, ``iptables`` or ``runc --version`` is run by a coroutine that may be
cancelled (its cell's reconcile was, kukeond is stopping) or give up waiting. A plain
``asyncio.create_subprocess_exec`` + ``communicate`` leaves the child running then,
unobserved, with the host half-changed and nobody to collect its exit. :func:`run_program`
kills it instead, with every process it started (it runs in a session and process group of
its own, which a plugin's own children, such as the ``iptables`` it runs, belong to), and
waits until it is reaped before the cancellation (a timeout's too) goes on to the caller.

It imports nothing of kukeon, so the runtime, the daemon and the API server may all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

REAP_SECONDS = 5.0
"""How long a killed program may take to be reaped before the caller goes on anyway."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A program that ran to its end: its exit code (negative: the signal) and output."""

    returncode: int
    stdout: bytes
    stderr: bytes


async def run_program(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run ``argv`` with ``stdin`` (none: ``/dev/null``), collecting stdout and stderr.

    When the caller is cancelled (bound it with ``asyncio.timeout``), the program and its
    process group are killed (SIGKILL) and reaped before the cancellation goes on.
    ``OSError`` when it cannot start (``FileNotFoundError`` for a missing program).
    """
    starting = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    )
    try:
        # Shielded: asyncio's own clean-up of a start cancelled halfway kills the program
        # alone and then waits for its pipes, which its children may hold for long.
        process = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Forked already (or failed to start: nothing to kill): let it finish, kill it all.
        with contextlib.suppress(OSError):
            await _kill_and_reap(await starting, argv[0])
        raise
    try:
        stdout, stderr = await process.communicate(stdin)
    except BaseException:
        await _kill_and_reap(process, argv[0])
        raise
    return Finished(returncode=process.returncode or 0, stdout=stdout, stderr=stderr)


async def _kill_and_reap(process: asyncio.subprocess.Process, name: str) -> None:
    """SIGKILL the program's process group and wait (bounded) until it is reaped.

    The group's id is the program's pid, which cannot be reused while the program is not
    reaped, so the signal reaches nobody else. A second cancellation during the wait does
    not stop the reaping: asyncio's child watcher collects the killed program anyway.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    reaped = asyncio.ensure_future(process.wait())
    try:
        async with asyncio.timeout(REAP_SECONDS):
            await asyncio.shield(reaped)
    except TimeoutError:
        log.warning("%s (pid %d) killed but not reaped after %gs", name, process.pid, REAP_SECONDS)
