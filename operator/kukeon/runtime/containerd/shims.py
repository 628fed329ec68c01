"""containerd shims that containerd has forgotten: found in ``/proc``, asked to exit.

containerd 1.6 deletes a task in steps: the shim's Delete, the task taken off its list,
the shim's Shutdown, the bundle removed. All of them run under the caller's request, so
when the caller dies in the middle (kukeond killed -9 while it tears cells down) the
request is cancelled after the task left containerd's list and before the shim was told
to exit: a shim process is left with no task, no bundle and no container, that containerd
never talks to again, not even after its own restart (it reloads shims from bundles).
Each holds a socket and some memory for good. Nobody but the host can still find it:
here, by its argv (``containerd-shim-* -namespace NS -id ID -address ADDRESS``).

Everything here is blocking (``/proc`` reads): callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from kukeon.processes import ProcessId, identify, runs_as

PROC = Path("/proc")

_VALUE_FLAGS = frozenset(
    {"namespace", "id", "address", "publish-binary", "bundle", "socket", "debug-socket"}
)


@dataclass(frozen=True, slots=True)
class Shim:
    """A long-running shim of one containerd: its process, namespace and container id."""

    process: ProcessId
    namespace: str
    container_id: str
    busy: bool
    """It has child processes (a task's, or a runc it runs): never an idle leftover."""


def parse_shim_argv(argv: list[str]) -> dict[str, str] | None:
    """The flags of a long-running shim's command line; None for anything else (another
    program, or a shim's short-lived ``start``/``delete`` invocation, which has a verb)."""
    if not argv or not Path(argv[0]).name.startswith("containerd-shim"):
        return None
    flags: dict[str, str] = {}
    words = iter(argv[1:])
    for word in words:
        if not word.startswith("-"):
            return None  # a verb: `start`, `delete`
        name, equals, value = word.lstrip("-").partition("=")
        if not equals and name in _VALUE_FLAGS:
            value = next(words, "")
        flags[name] = value
    return flags


def _children(pid: int) -> bool:
    with contextlib.suppress(OSError):
        for thread in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError):
                if (thread / "children").read_text().split():
                    return True
    return False


def find_shims(address: str) -> list[Shim]:
    """The long-running shims in this pid namespace that serve the containerd at
    ``address`` (its gRPC socket, as containerd gives it to them)."""
    own_pid_ns = os.readlink(PROC / "self/ns/pid")
    found: list[Shim] = []
    for entry in PROC.iterdir():
        if not entry.name.isdecimal():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            flags = parse_shim_argv(argv)
            # A container's process could spell a shim's argv: a shim is in the host's. So
            # could any local user's, one that ignores SIGTERM (clearing a leftover bundle
            # then waits for it and fails): a shim is containerd's, root as kukeond.
            if flags is None or os.readlink(entry / "ns" / "pid") != own_pid_ns:
                continue
        except OSError:
            continue
        if not runs_as(int(entry.name), os.geteuid()):
            continue
        if flags.get("address") != address or not flags.get("namespace") or not flags.get("id"):
            continue
        process = identify(int(entry.name))
        if process is not None:
            found.append(
                Shim(process, flags["namespace"], flags["id"], busy=_children(process.pid))
            )
    return found


def stop_shim(shim: Shim, *, even_busy: bool = False) -> bool:
    """SIGTERM the shim if it is still that process with no child (``even_busy``: with
    children too): it cancels its service, removes its socket and exits, as after
    containerd's Shutdown. False: it is gone or busy now."""
    try:
        pidfd = os.pidfd_open(shim.process.pid)
    except OSError:
        return False
    try:
        # Checked after the pidfd is open: the pid cannot be reused under it from here on.
        if identify(shim.process.pid) != shim.process or (
            not even_busy and _children(shim.process.pid)
        ):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)
