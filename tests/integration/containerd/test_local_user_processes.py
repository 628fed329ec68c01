"""A local user's process that spells a log copier's or a shim's argv is neither, checked with
``nobody`` (``runuser``).

kukeond finds a task's log copier, a terminal's keeper and a forgotten containerd shim by
their command lines in /proc, which every local user reads and can copy. Before, a process
of ``nobody``'s with a copier's argv (``python -ISc 'PATH = <the log>...'``) was taken for
the copier once the shim's was gone: kukeond watched it instead of starting a replacement
(the container's output unread, its writers killed by SIGPIPE, for as long as nobody
liked), and read a terminal through the fd 3 of a keeper of nobody's. One with a shim's argv
that ignores SIGTERM made the clearing of a leftover bundle wait for it and fail. Each test
shows the impostor is not taken, and that a process of root's with the same argv is (so
the impostor's argv is the real thing).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.processes import identify
from kukeon.runtime.containerd.crilog import KEEPER_NAME, log_path_marker
from kukeon.runtime.containerd.logcopier import find_copier
from kukeon.runtime.containerd.shims import find_shims
from tests.fixtures.services import require_binary, require_root, unavailable

pytestmark = pytest.mark.integration


def _nobodys_python() -> str:
    """A Python ``nobody`` may run (the venv's may be under /root)."""
    for candidate in ("/usr/bin/python3", os.path.realpath(sys.executable)):
        tried = subprocess.run(
            ["runuser", "-u", "nobody", "--", candidate, "-c", "pass"],
            capture_output=True,
            check=False,
            timeout=30,
        )
        if tried.returncode == 0:
            return candidate
    unavailable("no Python that nobody may run")
    raise AssertionError("unreachable")


@pytest.fixture
def python() -> str:
    require_root()
    require_binary("runuser", "util-linux")
    return _nobodys_python()


class Sleepers:
    """Processes that say their pid and sleep; each killed (and reaped) at the end."""

    def __init__(self) -> None:
        self.started: list[tuple[subprocess.Popen[str], int]] = []

    def start(self, argv: list[str], *, stdin: str = "", as_nobody: bool = False) -> int:
        if as_nobody:
            argv = ["runuser", "-u", "nobody", "--", *argv]
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            cwd="/",
        )
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(stdin)
        process.stdin.close()
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"{argv[:4]} said {line!r}"
        self.started.append((process, int(line)))
        return int(line)

    def stop(self) -> None:
        for process, pid in self.started:
            # The sleeper only (runuser reaps it, then exits): a killed runuser would leave
            # its child to a pid 1 that may reap nothing.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def sleepers() -> Iterator[Sleepers]:
    started = Sleepers()
    try:
        yield started
    finally:
        started.stop()


def _copier_code(log: Path, name: str | None) -> str:
    """A copier's argv[2]: its log's marker first, as crilog's loggers; ``name``: the
    process names itself so (a keeper's name)."""
    rename = f"open('/proc/self/comm', 'w').write({name!r})\n" if name else ""
    return (
        log_path_marker(log)
        + "import os, time\n"
        + rename
        + "print(os.getpid(), flush=True)\ntime.sleep(600)\n"
    )


def _wait_named(pid: int, name: str) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/comm").read_text().strip() != name:
        assert time.monotonic() < deadline, f"pid {pid} never named itself {name}"
        time.sleep(0.02)


@pytest.mark.parametrize("keeper", [False, True], ids=["copier", "keeper"])
def test_nobodys_process_is_no_tasks_copier(
    python: str, sleepers: Sleepers, tmp_path: Path, keeper: bool
) -> None:
    log = tmp_path / "logs" / "app.log"
    # A task whose shim ("sh") has no copier left (killed, OOM-killed).
    task = sleepers.start(["sh", "-c", "sleep 600 & echo $!; wait"])
    code = _copier_code(log, KEEPER_NAME if keeper else None)
    impostor = sleepers.start([python, "-ISc", code], as_nobody=True)
    if keeper:
        _wait_named(impostor, KEEPER_NAME)
    assert identify(impostor) is not None

    assert find_copier(task, log, keeper=keeper) is None, "nobody's process taken as the copier"

    # The control: root's process with that argv is found, though it is not the shim's child.
    own = sleepers.start([python, "-ISc", code])
    if keeper:
        _wait_named(own, KEEPER_NAME)
    found = find_copier(task, log, keeper=keeper)
    assert found is not None
    assert found.pid == own


def test_nobodys_process_is_no_shim(python: str, sleepers: Sleepers) -> None:
    address = f"/run/kukeon-test-{secrets.token_hex(4)}/containerd.sock"
    namespace, container_id = "k.kukeon.io", "s1_st1_cell_app"
    # Python reads its program from stdin ("-"), so that every argument is a shim's flag.
    shim_argv = ["-", "-namespace", namespace, "-id", container_id, "-address", address]
    program = "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    program += "print(os.getpid(), flush=True)\ntime.sleep(600)\n"
    exec_as_shim = ["bash", "-c", 'exec -a containerd-shim-runc-v2 "$@"', "bash", python]
    sleepers.start([*exec_as_shim, *shim_argv], stdin=program, as_nobody=True)

    assert find_shims(address) == [], "nobody's process taken as a shim"

    own = sleepers.start([*exec_as_shim, *shim_argv], stdin=program)
    found = find_shims(address)
    assert [(shim.process.pid, shim.namespace, shim.container_id) for shim in found] == [
        (own, namespace, container_id)
    ]
