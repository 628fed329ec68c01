"""The README's first command, hack/quickstart.sh, on this machine's default paths.

It installs, starts containerd (if none answers) and kukeond with the embedded etcd,
and serves a page from a cell. The test then removes everything it brought up: the
realms (through kukeond, so host resources are torn down), kukeond, the containerd it
started, and the default state and run directories when they did not exist before.
A kukeond already running on the default socket belongs to someone: the test does not
touch it and reports the machine as unsuitable (a failure under CI=true).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.services import require_binary, require_root, unavailable

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SOCKET = Path("/run/kukeon/kukeond.sock")
CONTAINERD_SOCKET = Path("/run/containerd/containerd.sock")
STATE_DIRS = (Path("/var/lib/kukeon"), Path("/run/kukeon"))
LINKS = (Path("/usr/local/bin/kukectl"), Path("/usr/local/bin/kukeond"))


def _containerd_answers() -> bool:
    if not CONTAINERD_SOCKET.is_socket():
        return False  # else ctr waits out its 10 s dial timeout
    result = subprocess.run(
        ["ctr", "--address", str(CONTAINERD_SOCKET), "version"], capture_output=True, check=False
    )
    return result.returncode == 0


def _kukectl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUKEON_SERVER": f"unix://{SOCKET}"}
    return subprocess.run(
        [str(REPO / ".venv/bin/kukectl"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


@pytest.fixture
def clean_machine() -> Iterator[None]:
    require_root()
    require_binary("ctr", "containerd")
    if SOCKET.exists():
        unavailable(f"a kukeond already serves {SOCKET}; the quickstart test needs a clean host")
    containerd_was_running = _containerd_answers()
    existed = {path: path.exists() for path in (*STATE_DIRS, *LINKS)}
    try:
        yield
    finally:
        # httpd, the cell's PID 1, ignores SIGTERM: stopped, it is killed rather than
        # waited for through kukeond's 10 s grace (the realm's deletion would wait it).
        scope = ("--realm", "hello", "--space", "web", "--stack", "site")
        _kukectl("stop", "hello", "--no-wait", *scope)
        _kukectl("kill", "hello", "--signal", "KILL", *scope)
        for realm in ("hello", "default"):
            _kukectl("delete", "realm", realm, "--cascade", "--wait", "--timeout=120s")
        subprocess.run(["bash", str(REPO / "hack/quickstart.sh"), "--stop"], check=False)
        pid_file = Path("/run/kukeon/kukeond.pid")
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            with contextlib.suppress(ValueError, ProcessLookupError, FileNotFoundError):
                os.kill(int(pid_file.read_text()), 0)
                time.sleep(0.2)
                continue
            break
        if not containerd_was_running:
            found = subprocess.run(["pgrep", "-x", "containerd"], capture_output=True, text=True)
            for pid in found.stdout.split():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if cmdline[:2] == [b"containerd", b""]:  # the one quickstart started, no flags
                    os.kill(int(pid), signal.SIGTERM)
        for path, was_there in existed.items():
            if was_there:
                continue
            if path.is_symlink():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(OSError):
                (hierarchy / "kukeon").rmdir()


@pytest.mark.timeout(900)
@pytest.mark.usefixtures("clean_machine")
def test_readme_quickstart_serves_the_page() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "hack/quickstart.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=800,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Hello from kukeon cell hello" in result.stdout
    assert "cell/hello created" in result.stdout or "cell/hello unchanged" in result.stdout
    # /metrics asks for the token the quickstart wrote: no other local account reads every
    # realm's series there.
    asked = subprocess.run(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:9464/metrics",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert asked.stdout == "401", asked
    # running it twice is harmless
    again = subprocess.run(
        ["bash", str(REPO / "hack/quickstart.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=800,
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "cell/hello unchanged" in again.stdout
    assert "Hello from kukeon cell hello" in again.stdout
