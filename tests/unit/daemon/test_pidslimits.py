"""The kukeon root's pids ceiling: the host's limit less `hostReservedPids`."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.pidslimits import host_pids_limit, own_cgroups_inside, root_pids_limit
from kukeon.daemon.starterrors import StartupError


def test_the_host_limit_is_the_smaller_of_pid_max_and_threads_max(tmp_path: Path) -> None:
    (tmp_path / "pid_max").write_text("32768\n")
    (tmp_path / "threads-max").write_text("20000\n")
    assert host_pids_limit(tmp_path) == 20000
    (tmp_path / "threads-max").unlink()
    assert host_pids_limit(tmp_path) == 32768
    (tmp_path / "pid_max").unlink()
    assert host_pids_limit(tmp_path) is None


def test_the_default_reserve_is_a_tenth_and_at_least_1024() -> None:
    assert root_pids_limit(None, 32768) == 32768 - 3276
    assert root_pids_limit(None, 4_194_304) == 4_194_304 - 419_430
    assert root_pids_limit(None, 5000) == 5000 - 1024


def test_a_reserve_as_configured_zero_for_none() -> None:
    assert root_pids_limit(100, 32768) == 32668
    assert root_pids_limit(0, 32768) is None
    assert root_pids_limit(None, None) is None


def test_a_reserve_that_leaves_the_realms_nothing_stops_the_start() -> None:
    with pytest.raises(StartupError, match="hostReservedPids 32768 leaves the realms nothing"):
        root_pids_limit(32768, 32768)
    with pytest.raises(StartupError, match="hostReservedPids 1024"):
        root_pids_limit(None, 1000)  # the default minimum on a tiny host: say so


def test_the_setting_is_validated() -> None:
    assert DaemonConfig(host_reserved_pids=2048).host_reserved_pids == 2048
    assert DaemonConfig.model_validate({"hostReservedPids": 0}).host_reserved_pids == 0
    with pytest.raises(ValueError, match=r"host_reserved_pids|hostReservedPids"):
        DaemonConfig.model_validate({"hostReservedPids": -1})


def test_kukeond_inside_its_own_root_is_found(tmp_path: Path) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.write_text(
        "12:pids:/kukeon/r1\n11:memory:/system.slice/kukeond.service\n"
        "1:name=systemd:/kukeon\n0::/kukeonx\n"
    )
    assert own_cgroups_inside("/kukeon", cgroup) == ["pids:/kukeon/r1", "name=systemd:/kukeon"]
    cgroup.write_text("0::/system.slice/kukeond.service\n")
    assert own_cgroups_inside("/kukeon", cgroup) == []
