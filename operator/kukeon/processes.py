"""Running a program to its end, never leaving it behind: for every layer.

A CNI plugin, ``iptables`` or ``runc --version`` is run by a coroutine that may be
cancelled (its cell's reconcile was, kukeond is stopping) or give up waiting. A plain
``create_subprocess_exec`` + ``communicate`` leaves the child running then,
unobserved, with the host half-changed and nobody to collect its exit. :func:`run_program`
kills it instead, with every process it started (it runs in a session and process group of
its own, which a plugin's own children, such as the ``iptables`` it runs, belong to), and
waits until it is reaped before the cancellation (a timeout's too) goes on to the caller.

It imports nothing of kukeon, so the runtime, the daemon and the API server may all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pwd
import signal
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL, PIPE, Popen
from typing import Any

log = logging.getLogger(__name__)

REAP_SECONDS = 5.0
"""How long a killed program may take to be reaped before the caller goes on anyway."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A program that ran to its end: its exit code (negative: the signal) and output."""

    returncode: int
    stdout: bytes
    stderr: bytes


# Programs are started and waited for on threads of their own: starting one from the event
# loop blocks it until the child has exec'd (fork, then the child's exec must be scheduled),
# which took up to 200 ms with 50 cells starting on two cores. Each running program holds
# one thread for its duration (plugins run for milliseconds); more wait their turn.
_PROGRAM_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kukeon-program")


def _start(
    argv: list[str],
    env: dict[str, str] | None,
    with_stdin: bool,
    cwd: Path | None,
    started: Callable[[int], None] | None,
) -> Popen[bytes]:
    process = Popen(
        argv,
        cwd=cwd,
        stdin=PIPE if with_stdin else DEVNULL,
        stdout=PIPE,
        stderr=PIPE,
        env=env,
        start_new_session=True,
    )
    if started is not None:
        started(process.pid)
    return process


async def run_program(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    started: Callable[[int], None] | None = None,
) -> Finished:
    """Run ``argv`` with ``stdin`` (none: ``/dev/null``) in ``cwd`` (none: ours),
    collecting stdout and stderr.

    ``started`` is called with the program's pid as soon as it runs, on the thread that
    started it (``nfttable`` tells its own ``nft`` from others' by it).

    When the caller is cancelled (bound it with ``asyncio.timeout``), the program and its
    process group are killed (SIGKILL) and reaped before the cancellation goes on.
    ``OSError`` when it cannot start (``FileNotFoundError`` for a missing program).
    """
    loop = asyncio.get_running_loop()
    starting = loop.run_in_executor(
        _PROGRAM_THREADS, _start, list(argv), dict(env) if env is not None else None,
        stdin is not None, cwd, started,
    )  # fmt: skip
    try:
        # Shielded: a start cancelled halfway has still forked; it is killed below.
        process = await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(OSError):
            await _kill_and_reap(await starting, argv[0], None)
        raise
    communicating = loop.run_in_executor(_PROGRAM_THREADS, process.communicate, stdin)
    try:
        stdout, stderr = await asyncio.shield(communicating)
    except BaseException:
        await _kill_and_reap(process, argv[0], communicating)
        raise
    return Finished(returncode=process.returncode or 0, stdout=stdout, stderr=stderr)


async def _kill_and_reap(
    process: Popen[bytes], name: str, communicating: asyncio.Future[Any] | None
) -> None:
    """SIGKILL the program's process group and wait (bounded) until it is reaped.

    The group's id is the program's pid, which cannot be reused while the program is not
    reaped, so the signal reaches nobody else. A second cancellation during the wait does
    not stop the reaping: the thread waiting for the program collects it anyway.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    loop = asyncio.get_running_loop()
    # communicate() returns once the killed group's pipes close, and reaps the program.
    reaped = communicating or loop.run_in_executor(_PROGRAM_THREADS, process.wait)
    try:
        async with asyncio.timeout(REAP_SECONDS):
            await asyncio.shield(reaped)
    except TimeoutError:
        log.warning("%s (pid %d) killed but not reaped after %gs", name, process.pid, REAP_SECONDS)
    except Exception:
        log.debug("waiting for killed %s (pid %d) failed", name, process.pid, exc_info=True)


# --- a process as /proc tells it (blocking reads: call from a thread) -----------------------


@dataclass(frozen=True, slots=True)
class ProcessId:
    """A process that a reused pid cannot be mistaken for: its pid and start time."""

    pid: int
    started: int
    """Clock ticks after boot (``/proc/<pid>/stat`` field 22)."""


def proc_stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat``'s fields after the command name (state first, then the parent's
    pid...); None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses.
    return text[text.rindex(")") + 2 :].split()


def identify(pid: int) -> ProcessId | None:
    """The running (not zombie) process ``pid``; None when there is none."""
    fields = proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return ProcessId(pid=pid, started=int(fields[19]))


def runs_as(pid: int, uid: int) -> bool:
    """Whether every user id of process ``pid`` (real, effective, saved, filesystem) is
    ``uid``; False when there is no such process.

    What tells a process kukeond or containerd started from one any local user did: its
    argv and name are whatever that user chose, and its ``/proc/<pid>`` entries can be
    root's too (those of a process that made itself non-dumpable are), but its ids cannot
    (a set-user-ID program keeps its caller's real one).
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("Uid:"):
            ids = line.split()[1:]
            return len(ids) == 4 and all(found == str(uid) for found in ids)
    return False


# --- who listens on a TCP port (blocking reads: call from a thread) -------------------------

_LISTEN = "0A"
"""``st`` of a listening socket in ``/proc/net/tcp``."""
TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def listener_uids(port: int, tables: Sequence[Path] = TCP_TABLES) -> set[int]:
    """The owners' uids of the TCP sockets listening on ``port`` (any address) in this
    process's network namespace."""
    uids: set[int] = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rpartition(":")[2], 16) == port:
                uids.add(int(fields[7]))
    return uids


def squatter_uids(port: int, error: OSError) -> list[int]:
    """The uids of the accounts other than root whose listeners alone hold ``port``, when
    ``error`` is its bind's "address in use": a local user took a port kukeond serves on
    (an unprivileged one), which must not keep kukeond down. [] for any other failure, for
    a listener of root's among them (another service of the host: the operator's to sort
    out), or when none is found."""
    if error.errno != errno.EADDRINUSE:
        return []
    uids = listener_uids(port)
    if not uids or 0 in uids:
        return []
    return sorted(uids)


def held_by_others(port: int, error: OSError) -> str | None:
    """Who alone holds ``port`` when ``error`` is its bind's "address in use" and no
    listener of root's is among them (``squatter_uids``): ``uid 65534 (nobody)``, several
    comma-separated; None otherwise."""
    uids = squatter_uids(port, error)
    return ", ".join(map(account, uids)) if uids else None


def account(uid: int) -> str:
    """``uid 65534 (nobody)``, or ``uid N`` for an id no account has."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"
