"""kukeond's directories at start: created 0750, the run directory the socket group's, narrowed."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.hostdirs import prepare_host_directories
from tests.fixtures.services import require_root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def config(tmp_path: Path) -> DaemonConfig:
    return DaemonConfig(state_dir=tmp_path / "var" / "state", run_dir=tmp_path / "run" / "kk")


def test_fresh_directories_are_0750_at_every_level_and_root_s(tmp_path: Path) -> None:
    require_root()
    settings = config(tmp_path)
    prepare_host_directories(settings, socket_group=None)
    for directory in (tmp_path / "var", settings.state_dir, tmp_path / "run", settings.run_dir):
        assert mode(directory) == 0o750, directory
    assert settings.run_dir.stat().st_gid == 0


def test_the_run_directory_belongs_to_the_socket_group(tmp_path: Path) -> None:
    require_root()
    settings = config(tmp_path)
    group = grp.getgrgid(os.getgid() if os.getgid() != 0 else 1)  # any group but root's
    prepare_host_directories(settings, socket_group=group.gr_name)
    assert settings.run_dir.stat().st_gid == group.gr_gid
    assert mode(settings.run_dir) == 0o750
    # A group that does not exist: root's only.
    prepare_host_directories(settings, socket_group="kukeon-no-such-group")
    assert settings.run_dir.stat().st_gid == 0


def test_what_an_older_version_left_is_narrowed_but_the_bind_mounted_files(
    tmp_path: Path,
) -> None:
    require_root()
    settings = config(tmp_path)
    cell = settings.state_dir / "cells" / "r" / "s" / "st" / "c"
    (cell / "logs").mkdir(parents=True)
    (cell / "logs" / "app.log").write_text("out\n")
    (cell / "hosts").write_text("127.0.0.1 localhost\n")
    settings.run_dir.mkdir(parents=True)
    (settings.run_dir / "kukeond.pid").write_text("1\n")
    for path in [*settings.state_dir.rglob("*"), settings.state_dir, settings.run_dir]:
        path.chmod(0o777 if path.is_dir() else 0o644)
    (settings.run_dir / "kukeond.pid").chmod(0o646)

    prepare_host_directories(settings, socket_group=None)

    assert mode(cell / "logs" / "app.log") == 0o640
    assert mode(cell / "hosts") == 0o644
    assert mode(settings.run_dir / "kukeond.pid") == 0o640
    for directory in [settings.state_dir, *settings.state_dir.rglob("*"), settings.run_dir]:
        if directory.is_dir():
            assert mode(directory) == 0o750, directory
