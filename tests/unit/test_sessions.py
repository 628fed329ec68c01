"""A session's record and the sweep of dead ones (tests/fixtures/sessions.py, leftovers.py),
with records of small child processes: a live session is never swept, a dead one's
processes and scratch directories go, and a service dies with the process that spawned it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import sessions
from tests.fixtures.leftovers import sweep_dead_sessions

REPO_ROOT = Path(__file__).resolve().parents[2]

# A session in miniature: it records a scratch directory, starts `sleep` as a plain child
# (it carries the session's mark, no death signal) and as a service (death signal), says
# their pids and waits.
_SESSION = """
import subprocess, sys, threading, time
from pathlib import Path
from tests.fixtures import sessions
sessions.start_recording(Path(sys.argv[1]))
sessions.note("scratch", path=sys.argv[2])
plain = subprocess.Popen(["sleep", "300"])
service = []
# Spawned from a thread that ends at once: the death signal must not come with it.
thread = threading.Thread(target=lambda: service.append(sessions.spawn_service(["sleep", "300"])))
thread.start()
thread.join()
print(plain.pid, service[0].pid, flush=True)
time.sleep(300)
"""


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    if os.geteuid() != 0:
        pytest.skip("reads every process's environment: needs root")
    (tmp_path / "scratch").mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _SESSION, str(tmp_path / "records"), str(tmp_path / "scratch")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    plain, service = (int(pid) for pid in child.stdout.readline().split())
    yield child, plain, service
    for pid in (child.pid, plain, service):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child.wait()


def test_a_live_sessions_record_and_processes_are_left_alone(
    tmp_path: Path, session: tuple[subprocess.Popen[str], int, int]
) -> None:
    _, plain, service = session
    assert sweep_dead_sessions(tmp_path / "records") == []
    assert len(os.listdir(tmp_path / "records")) == 1
    assert (tmp_path / "scratch").is_dir()
    assert sessions.wait_gone([plain, service], within=0) == [plain, service]


def test_a_killed_sessions_service_dies_with_it_and_the_sweep_takes_the_rest(
    tmp_path: Path, session: tuple[subprocess.Popen[str], int, int]
) -> None:
    child, plain, service = session
    child.kill()
    child.wait()
    assert sessions.wait_gone([service], within=10) == []  # the death signal
    assert sessions.wait_gone([plain], within=0.2) == [plain]  # no death signal

    (swept,) = sweep_dead_sessions(tmp_path / "records")

    assert swept.startswith(f"session {child.pid}-")
    assert "1 processes" in swept
    assert sessions.wait_gone([plain], within=10) == []
    assert not (tmp_path / "scratch").exists()
    assert os.listdir(tmp_path / "records") == []


def test_a_record_whose_lock_was_let_go_while_its_process_runs_is_left_alone(
    tmp_path: Path,
) -> None:
    record = sessions.SessionRecord.open(tmp_path / "records")
    os.close(record.lock_fd)  # as a test closing every descriptor would
    assert sweep_dead_sessions(tmp_path / "records") == []
    assert record.directory.is_dir()
