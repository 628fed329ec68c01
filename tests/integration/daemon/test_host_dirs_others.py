"""kukeond refuses a state or run directory another account may change.

Found as ``nobody`` (helper-154's local-user pass): kukeond took its state and run
directories as it found them, narrowing their modes but not their owner. A directory a
local user made first (a configured path under /tmp: any account may make it before
kukeond starts) stayed that user's, who could open it again at will (``chmod``): the
embedded etcd's keys and data, staged secrets, the API socket are kept there. Now such a
directory, or one whose path others may change, stops the start with one line.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.hostdirs import prepare_host_directories
from kukeon.daemon.starterrors import StartupError
from tests.fixtures.services import require_binary, require_root

pytestmark = pytest.mark.integration


def _as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        cwd="/",
    )


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every account may make entries in, as /tmp (1777)."""
    require_root()
    require_binary("runuser", "util-linux")
    base = Path(tempfile.mkdtemp(prefix="kukeon-hostdirs-", dir="/tmp"))
    base.chmod(0o1777)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_state_directory_nobody_made_first_stops_the_start(shared_tmp: Path) -> None:
    state, run = shared_tmp / "state", shared_tmp / "run"
    made = _as_nobody("mkdir", str(state))
    assert made.returncode == 0, made.stderr
    config = DaemonConfig(state_dir=state, run_dir=run)
    with pytest.raises(StartupError, match=r"state directory .* is open to other local users"):
        prepare_host_directories(config, socket_group=None)  # before: taken as it was
    # What it would have meant: the owner opens it again, whatever mode kukeond set.
    assert _as_nobody("chmod", "0777", str(state)).returncode == 0


def test_a_run_directory_nobody_made_first_stops_the_start(shared_tmp: Path) -> None:
    state, run = shared_tmp / "state", shared_tmp / "run"
    assert _as_nobody("mkdir", str(run)).returncode == 0
    with pytest.raises(StartupError, match=r"run directory .* belongs to nobody"):
        prepare_host_directories(DaemonConfig(state_dir=state, run_dir=run), socket_group=None)


def test_root_directories_in_a_shared_directory_are_taken(shared_tmp: Path) -> None:
    """The control: made by kukeond (root's) in a sticky directory, they are its own."""
    config = DaemonConfig(state_dir=shared_tmp / "state", run_dir=shared_tmp / "run")
    prepare_host_directories(config, socket_group=None)
    assert (shared_tmp / "state").stat().st_uid == 0
    assert _as_nobody("chmod", "0777", str(shared_tmp / "state")).returncode != 0
