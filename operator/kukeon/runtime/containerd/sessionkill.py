"""Ending an exec'd process with everything it started.

runc makes each exec'd process the leader of a new session (and of its process group).
containerd's Kill of an exec signals that one process: a shell killed so (an exec probe
past its timeout, an exec whose client left) leaves its commands running, reparented to the
container's init; a probe running ``sh -c 'curl ...'`` every few seconds against a dead
upstream piled up one hung ``curl`` per period until the container's pids limit refused
every fork. :func:`kill_session` SIGKILLs the leader's process group at once, then every
other process of its session (a shell with job control puts each job in a group of its
own), read from ``/proc``. A process that left the session (``setsid``, a daemon) is left
alone: it asked to outlive its parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

PROC = Path("/proc")


def _session_of(stat: str) -> tuple[int, int] | None:
    """(process group, session) from a ``/proc/<pid>/stat`` line (after the command's
    closing parenthesis: state, ppid, pgrp, session), None when it does not read so."""
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 4 or not (fields[2].isdigit() and fields[3].isdigit()):
        return None
    return int(fields[2]), int(fields[3])


def session_members(leader: int, proc: Path = PROC) -> list[int]:
    """The pids whose session is ``leader``'s (the leader too, while it runs)."""
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found = _session_of((entry / "stat").read_text())
        except OSError:
            continue  # exited while listed
        if found is not None and found[1] == leader:
            members.append(int(entry.name))
    return members


def kill_session(leader: int, proc: Path = PROC) -> int:
    """SIGKILL session ``leader``'s processes; how many were signalled. Nothing when
    ``leader`` leads no session (not an exec'd process of runc's, or gone): a pid reused
    since must not lose its group. Blocking (reads /proc): run it in a thread."""
    if leader <= 1:
        return 0
    try:
        if os.getsid(leader) != leader:
            return 0
    except OSError:
        return 0
    signalled = 0
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)  # the group at once: it cannot fork past this
        signalled += 1
    for pid in session_members(leader, proc):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            signalled += 1
    return signalled
