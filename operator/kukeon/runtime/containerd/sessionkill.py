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

from kukeon.processes import proc_stat

PROC = Path("/proc")


def session_members(leader: int) -> list[int]:
    """The pids whose session is ``leader``'s (the leader too, while it runs)."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = proc_stat(int(entry.name))  # None: exited while listed
        # After the command: state, ppid, process group, session.
        if fields is not None and len(fields) > 3 and fields[3] == str(leader):
            members.append(int(entry.name))
    return members


def kill_session(leader: int) -> int:
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
    for pid in session_members(leader):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            signalled += 1
    return signalled
