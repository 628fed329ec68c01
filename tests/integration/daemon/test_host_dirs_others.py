"""kukeond refuses a state or run directory another account may change.

Found as ``nobody`` (helper-154's local-user pass): kukeond took its state and run
directories as it found them, narrowing their modes but not their owner. A directory a
local user made first (a configured path under /tmp: any account may make it before
kukeond starts) stayed that user's, who could open it again at will (``chmod``): the
embedded etcd's keys and data, staged secrets, the API socket are kept there. Now such a
directory, or one whose path others may change, stops the start with one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.hostdirs import prepare_host_directories
from kukeon.daemon.starterrors import StartupError
from tests.fixtures.localuser import as_nobody, walkable_base

pytestmark = pytest.mark.integration


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory every account may make entries in, as /tmp (1777)."""
    with walkable_base("kukeon-hostdirs-") as base:
        base.chmod(0o1777)
        yield base


def test_a_state_directory_nobody_made_first_stops_the_start(shared_tmp: Path) -> None:
    state, run = shared_tmp / "state", shared_tmp / "run"
    assert as_nobody("mkdir", str(state))
    config = DaemonConfig(state_dir=state, run_dir=run)
    with pytest.raises(StartupError, match=r"state directory .* is open to other local users"):
        prepare_host_directories(config, socket_group=None)  # before: taken as it was
    # What it would have meant: the owner opens it again, whatever mode kukeond set.
    assert as_nobody("chmod", "0777", str(state))


def test_a_run_directory_nobody_made_first_stops_the_start(shared_tmp: Path) -> None:
    state, run = shared_tmp / "state", shared_tmp / "run"
    assert as_nobody("mkdir", str(run))
    with pytest.raises(StartupError, match=r"run directory .* belongs to nobody"):
        prepare_host_directories(DaemonConfig(state_dir=state, run_dir=run), socket_group=None)


def test_root_directories_in_a_shared_directory_are_taken(shared_tmp: Path) -> None:
    """The control: made by kukeond (root's) in a sticky directory, they are its own."""
    config = DaemonConfig(state_dir=shared_tmp / "state", run_dir=shared_tmp / "run")
    prepare_host_directories(config, socket_group=None)
    assert (shared_tmp / "state").stat().st_uid == 0
    assert not as_nobody("chmod", "0777", str(shared_tmp / "state"))
