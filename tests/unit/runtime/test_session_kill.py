"""An exec'd process ended by kukeond (a probe past its timeout, an exec whose client left)
takes what it started with it: its process group, and its session's other groups (a shell
with job control). Before, containerd's Kill reached the leader alone and its commands ran
on in the container: an exec probe ``sh -c 'sleep 300'`` timing out every period left one
``sleep`` more each time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.sessionkill import kill_session, session_members
from kukeon.runtime.containerd.tasks import ExitStatus, TaskInfo, TaskService, TaskStatus

# Durations no other process of the host sleeps: the test finds its processes by them.
OWN, JOB, ESCAPED, OTHER = (f"{600 + n}.{os.getpid()}" for n in range(4))
# A `sleep` in a process group of its own, as a shell with job control starts a job.
IN_OWN_GROUP = (
    f'{sys.executable} -c \'import os; os.setpgid(0, 0); os.execvp("sleep", ["sleep", "{JOB}"])\''
)
# The leader's own `sleep`, a job, and a process that left the session (`setsid`): it
# asked to outlive the leader and is left alone.
SCRIPT = f"sleep {OWN} & {IN_OWN_GROUP} & setsid sleep {ESCAPED} & wait"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _sleeps(seconds: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if cmdline.read().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not true within the bound"
        time.sleep(0.02)


@pytest.fixture
def session() -> Iterator[subprocess.Popen[bytes]]:
    """A session leader (as runc makes an exec'd process) running SCRIPT."""
    leader = subprocess.Popen(["sh", "-c", SCRIPT], start_new_session=True)
    try:
        _until(lambda: all(_sleeps(s) for s in (OWN, JOB, ESCAPED)))
        yield leader
    finally:
        for pid in [*_sleeps(OWN), *_sleeps(JOB), *_sleeps(ESCAPED), leader.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        leader.wait()


def test_the_session_goes_with_its_leader(session: subprocess.Popen[bytes]) -> None:
    [own] = _sleeps(OWN)
    [job] = _sleeps(JOB)
    [escaped] = _sleeps(ESCAPED)
    assert os.getpgid(job) != session.pid  # a group of its own, in the leader's session
    assert set(session_members(session.pid)) == {session.pid, own, job}

    assert kill_session(session.pid) >= 3
    session.wait(timeout=5)
    _until(lambda: not _running(own) and not _running(job))
    assert _running(escaped)


def test_a_process_leading_no_session_loses_nothing() -> None:
    inside = subprocess.Popen(["sh", "-c", f"sleep {OTHER} & wait"])  # the test's own session
    try:
        _until(lambda: bool(_sleeps(OTHER)))
        assert kill_session(inside.pid) == 0
        assert kill_session(1) == 0
        assert _running(inside.pid)
        assert all(_running(p) for p in _sleeps(OTHER))
    finally:
        for pid in [*_sleeps(OTHER), inside.pid]:
            os.kill(pid, signal.SIGKILL)
        inside.wait()


class OneProcess(TaskService):
    """containerd's view of one exec'd process: Kill reaches the leader alone."""

    def __init__(self, pid: int, status: TaskStatus = TaskStatus.RUNNING) -> None:
        super().__init__(client=cast(ContainerdClient, object()), namespace="ns")
        self.leader, self.status = pid, status

    async def get(self, container_id: str, *, exec_id: str = "") -> TaskInfo:
        return TaskInfo(container_id, exec_id, self.leader, self.status, 0, None, "", "", False)

    async def kill(self, container_id: str, signal: int = 15, **kwargs: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.leader, signal)

    async def wait(self, container_id: str, *, exec_id: str = "") -> ExitStatus:
        await asyncio.to_thread(_until, lambda: not _running(self.leader))
        return ExitStatus(code=137, exited_at=None)

    async def delete_process(self, container_id: str, exec_id: str) -> ExitStatus | None:
        return None


async def test_end_process_ends_what_the_process_started(
    session: subprocess.Popen[bytes],
) -> None:
    own, job = _sleeps(OWN), _sleeps(JOB)
    tasks = OneProcess(session.pid)
    waiting = asyncio.ensure_future(asyncio.Event().wait())  # the caller's wait, not done

    await tasks.end_process("c", "probe-1", cast("asyncio.Future[ExitStatus]", waiting))

    await asyncio.to_thread(session.wait, 5)
    await asyncio.to_thread(_until, lambda: not any(map(_running, own + job)))


async def test_an_exited_process_pid_is_not_signalled(session: subprocess.Popen[bytes]) -> None:
    """containerd still answers with the pid of an exited exec: it may be another's now."""
    tasks = OneProcess(session.pid, status=TaskStatus.STOPPED)
    await tasks._kill_session("c", "probe-1")
    assert _running(session.pid)
    assert all(map(_running, _sleeps(OWN) + _sleeps(JOB)))
