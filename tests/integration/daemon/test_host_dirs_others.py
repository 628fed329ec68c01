"""kukeond refuses a state or run directory another account may change.

Found as ``nobody`` (helper-154's local-user pass): kukeond took its state and run
directories as it found them, narrowing their modes but not their owner. A directory a
local user made first (a configured path under /tmp: any account may make it before
kukeond starts) stayed that user's, who could open it again at will (``chmod``): the
embedded etcd's keys and data, staged secrets, the API socket are kept there. Now such a
directory, or one whose path others may change, stops the start with one line.

helper-215's pass found that line came too late for a link: a run or state directory
``nobody`` made first as a link to a directory of the host (``ln -s /etc /tmp/kk-run``) got
the run directory's ``chown``/``chmod`` (the host's ``/etc`` ``0750`` root:kukeon), the
narrowing of the whole tree it points to (``/etc/passwd`` ``0640``) and kukeond's lock file
before the refusal. The check now comes before kukeond changes or makes anything there.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
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


def _host_directory(base: Path) -> Path:
    """A root directory as the host's ``/etc``: ``0755``, a ``0644`` file, a ``0755``
    directory; nobody reads them."""
    host = base / "host-etc"
    (host / "ssh").mkdir(parents=True)
    (host / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    for path, mode in ((host, 0o755), (host / "ssh", 0o755), (host / "passwd", 0o644)):
        path.chmod(mode)
    return host


def _modes(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` (itself included): its mode, owner and group."""
    found: dict[str, tuple[int, int, int]] = {}
    for path in (root, *sorted(root.rglob("*"))):
        info = path.lstat()
        found[str(path.relative_to(root))] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return found


def _config(base: Path, *, api_only: bool = False) -> DaemonConfig:
    return DaemonConfig(
        state_dir=base / "state",
        run_dir=base / "run",
        netns_dir=base / "netns",
        cni_conf_dir=base / "cni",
        api_only=api_only,
    )


@pytest.mark.parametrize(
    ("planted", "what"),
    [
        ("state", "state"),
        ("run", "run"),
        ("netns", "network namespace"),
        ("cni", "CNI configuration"),
    ],
)
def test_a_directory_nobody_planted_as_a_link_is_refused_before_anything_is_changed(
    shared_tmp: Path, planted: str, what: str
) -> None:
    host = _host_directory(shared_tmp)
    before = _modes(host)
    link = shared_tmp / planted
    assert as_nobody("ln", "-s", str(host), str(link))
    with pytest.raises(StartupError, match=rf"{what} directory .* belongs to nobody"):
        # The socket's group: nobody's (nogroup), so that a chown through the link shows.
        prepare_host_directories(_config(shared_tmp), socket_group="65534")
    # Before: {'passwd': (0o640, 0, 0), 'ssh': (0o750, 0, 0)} and, for a link as the run
    # directory, {'.': (0o750, 0, 65534)}: the group's members read all of it. The network
    # namespace and CNI directories were not looked at: kukeond later bound namespaces in
    # the first and read its conflists back from the second, its owner's to rewrite.
    assert _modes(host) == before
    assert as_nobody("cat", str(host / "passwd"))


def test_kukeond_makes_no_lock_file_in_a_directory_nobody_planted(shared_tmp: Path) -> None:
    """The lock files are made before the rest of the start: the real command's refusal."""
    host = _host_directory(shared_tmp)
    before = _modes(host)
    assert as_nobody("ln", "-s", str(host), str(shared_tmp / "run"))
    command = [
        str(Path(sys.executable).parent / "kukeond"),
        "--state-dir", str(shared_tmp / "state"),
        "--run-dir", str(shared_tmp / "run"),
        "--containerd-address", str(shared_tmp / "no-containerd.sock"),
    ]  # fmt: skip
    started = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={key: value for key, value in os.environ.items() if not key.startswith("KUKEON_")},
    )
    assert started.returncode == 1, started.stdout + started.stderr
    assert "run directory" in started.stderr, started.stderr
    assert "belongs to nobody" in started.stderr, started.stderr
    # Before: a kukeond.lock (root's, 0600) in the directory the link points to.
    assert _modes(host) == before


def test_a_cni_directory_nobody_made_first_stops_the_start_of_a_node_only(
    shared_tmp: Path,
) -> None:
    """kukeond runs the CNI plugins as root with the conflists it reads from there."""
    assert as_nobody("mkdir", str(shared_tmp / "cni"))
    # An API-only kukeond runs no cell: neither directory is its.
    prepare_host_directories(_config(shared_tmp, api_only=True), socket_group=None)
    assert not (shared_tmp / "netns").exists()
    with pytest.raises(StartupError, match=r"CNI configuration directory .* belongs to nobody"):
        prepare_host_directories(_config(shared_tmp), socket_group=None)
    assert (shared_tmp / "netns").stat().st_uid == 0  # made by kukeond: root's
