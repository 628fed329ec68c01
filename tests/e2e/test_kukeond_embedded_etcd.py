"""kukeond and its embedded etcd as one unit: a real ``kukeond`` process (API only, so no
containerd is needed), its etcd child, SIGKILLs.

- kill -9 of kukeond: the kernel ends its etcd too, and the next kukeond is ready in
  seconds with the same data (no stale etcd holding the data directory);
- kill -9 of the etcd alone: kukeond starts it again on the same address, the API serves
  again, the log says so once (no retry flood), and SIGTERM still stops kukeond at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.services import free_tcp_port, require_binary, require_root
from tests.fixtures.sessions import SESSION_ENV, spawn_service

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


@dataclass
class Node:
    """One kukeond with the embedded etcd under ``base``; started again with ``start``."""

    base: Path
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = field(default_factory=free_tcp_port)
    log_name: str = "kukeond.log"

    @property
    def socket(self) -> Path:
        return self.base / "run" / "kukeond.sock"

    @property
    def log(self) -> Path:
        return self.base / self.log_name

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = spawn_service(
                [
                    str(BIN / "kukeond"),
                    "--state-dir",
                    str(self.base / "state"),
                    "--run-dir",
                    str(self.base / "run"),
                    "--metrics-address",
                    f"127.0.0.1:{self.metrics_port}",
                    "--api-only",
                    "--no-bootstrap",
                ],
                # Not the host's settings; the session's mark stays: should the session
                # be killed, the next one finds the embedded etcd by it.
                env={
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith("KUKEON_") or k == SESSION_ENV
                },
                stdout=log,
            )

    def kukectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kukectl"), "--server", f"unix://{self.socket}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def wait_ready(self, within: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < within:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"kukeond exited: {self.log_tail()}")
            if self.socket.exists() and self.kukectl("get", "realms").returncode == 0:
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"kukeond not ready after {within:g}s: {self.log_tail()}")

    def etcd_pid(self) -> int:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in map(int, children.read_text().split()):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "etcd":
                    return pid
        raise AssertionError(f"no etcd child of kukeond: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def _wait_dead(pid: int, within: float) -> None:
    deadline = time.monotonic() + within
    while _alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive after {within:g}s"
        time.sleep(0.05)


def _realm(name: str) -> str:
    return json.dumps(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": name}}
    )


@pytest.fixture
def node() -> Iterator[Node]:
    require_root()
    require_binary("etcd", "etcd-server")
    require_binary("setpriv", "util-linux")
    base = Path(tempfile.mkdtemp(prefix="kukeon-embedded-e2e-", dir="/dev/shm"))
    running = Node(base=base)
    try:
        yield running
    finally:
        running.stop()
        # An etcd a failed test left serving this state directory.
        wanted = f"--data-dir\0{base / 'state' / 'etcd' / 'etcd'}\0".encode()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if wanted in Path(f"/proc/{entry}/cmdline").read_bytes():
                        os.kill(int(entry), signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def test_kill_9_of_kukeond_takes_its_etcd_and_the_next_start_is_quick(node: Node) -> None:
    node.start()
    node.wait_ready(within=60)
    assert node.kukectl("apply", "-f", "-", stdin=_realm("kept")).returncode == 0
    etcd = node.etcd_pid()
    assert node.process is not None
    node.process.kill()
    node.process.wait()
    _wait_dead(etcd, within=5.0)

    node.start()
    took = node.wait_ready(within=30)
    assert took < 15, f"the next kukeond took {took:.1f}s: {node.log_tail()}"
    assert "kept" in node.kukectl("get", "realms").stdout
    assert "stale" not in node.log_tail(200)  # nothing was left to stop


def test_etcd_killed_alone_comes_back_and_the_log_stays_quiet(node: Node) -> None:
    node.start()
    node.wait_ready(within=60)
    first = node.etcd_pid()
    os.kill(first, signal.SIGKILL)
    _wait_dead(first, within=5.0)
    # The API serves again once the etcd is back (the registry retries meanwhile).
    assert node.kukectl("apply", "-f", "-", stdin=_realm("after")).returncode == 0, node.log_tail()
    second = node.etcd_pid()
    assert second != first
    # The supervisor logs its success once its health check passes, which may come a
    # moment after the API got through; the watches' last retries settle within a second.
    deadline = time.monotonic() + 10
    while "serving again" not in node.log.read_text(errors="replace"):
        assert time.monotonic() < deadline, node.log_tail()
        time.sleep(0.1)
    time.sleep(1.5)
    back = node.log.read_text(errors="replace")
    time.sleep(3)  # what a retry loop would print meanwhile
    log = node.log.read_text(errors="replace")
    assert log == back, "kukeond keeps logging once etcd is back"
    assert log.count("exited with status") == 1, log
    assert log.count("serving again") == 1, log
    # The watches say once a second that they resume while etcd is away; no more than that.
    assert len(log.splitlines()) < 100, log
    assert node.process is not None
    started = time.monotonic()
    node.process.send_signal(signal.SIGTERM)
    node.process.wait(timeout=30)
    assert time.monotonic() - started < 25
    _wait_dead(second, within=5.0)


def test_sigterm_stops_kukeond_in_time_while_its_etcd_hangs(node: Node) -> None:
    """A frozen etcd (SIGSTOP: alive, answering nothing) is the worst case for a shutdown
    whose steps talk to etcd; kukeond still ends within systemd's TimeoutStopSec (30 s)."""
    node.start()
    node.wait_ready(within=60)
    etcd = node.etcd_pid()
    os.kill(etcd, signal.SIGSTOP)
    try:
        time.sleep(2)  # watches and the heartbeat are now waiting on it
        assert node.process is not None
        started = time.monotonic()
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=60)
        took = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(etcd, signal.SIGCONT)
    assert took < 25, f"SIGTERM took {took:.1f}s: {node.log_tail()}"
    _wait_dead(etcd, within=10.0)


def test_a_second_kukeond_on_the_same_directories_stops_at_once_and_harms_nothing(
    node: Node,
) -> None:
    """It got as far as stopping the running etcd (a "stale" one of its data) and, failing
    on the socket, removing the running daemon's socket; now it stops before anything, one
    log line naming the holder, exit 1."""
    node.start()
    node.wait_ready(within=60)
    assert node.kukectl("apply", "-f", "-", stdin=_realm("first")).returncode == 0
    etcd = node.etcd_pid()
    assert node.process is not None
    first = node.process
    # The same state and run directories; its own port and log.
    second = Node(base=node.base, log_name="second.log")
    second.start()
    assert second.process is not None
    assert second.process.wait(timeout=30) == 1
    lines = second.log.read_text().splitlines()
    said = [json.loads(line) for line in lines if line.startswith("{")]
    assert [line for line in lines if not line.startswith("{")] == []  # no traceback
    assert said[-1]["level"] == "error", said
    assert "another kukeond" in said[-1]["msg"], said
    assert f"(pid {first.pid})" in said[-1]["msg"], said

    assert _alive(etcd), "the running kukeond's etcd was stopped"
    assert node.socket.is_socket()
    assert "first" in node.kukectl("get", "realms").stdout, node.log_tail()
