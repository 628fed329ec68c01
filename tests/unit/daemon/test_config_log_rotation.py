"""containerLogMaxSize and containerLogMaxFiles: the kubelet's defaults, from the file and
the environment, refused when they keep nothing to rotate into or too many files; they
reach the cells' loggers and the log copiers' replacements through the host settings."""

from pathlib import Path

import pytest

from kukeon.daemon.app import host_settings
from kukeon.daemon.config import ConfigError, load_config
from kukeon.runtime.containerd.crilog import LogRotation


def test_the_kubelets_defaults() -> None:
    config = load_config(environ={})
    assert config.log_rotation == LogRotation(max_size=10 * 1024 * 1024, max_files=5)
    assert host_settings(config, root_pids_limit=None).log_rotation == config.log_rotation


def test_from_the_file_and_the_environment(tmp_path: Path) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("containerLogMaxSize: 1048576\ncontainerLogMaxFiles: 3\n")
    config = load_config(config_file=config_file, environ={"KUKEON_CONTAINER_LOG_MAX_FILES": "2"})
    assert config.log_rotation == LogRotation(max_size=1048576, max_files=2)


@pytest.mark.parametrize(
    ("environ", "said"),
    [
        ({"KUKEON_CONTAINER_LOG_MAX_FILES": "1"}, "keeps no file to rotate into: at least 2"),
        ({"KUKEON_CONTAINER_LOG_MAX_FILES": "0"}, "at least 2"),
        ({"KUKEON_CONTAINER_LOG_MAX_FILES": "101"}, "too many: at most 100.*containerLogMaxSize"),
        ({"KUKEON_CONTAINER_LOG_MAX_SIZE": "4096"}, "too small.*at least 65536"),
        ({"KUKEON_CONTAINER_LOG_MAX_SIZE": "0"}, "too small"),
        ({"KUKEON_CONTAINER_LOG_MAX_SIZE": "10Mi"}, "not a number of bytes.*10485760"),
    ],
)
def test_settings_that_cannot_bound_a_log_are_refused(environ: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError, match=f"container_log_max_.*{said}"):
        load_config(environ=environ)


def test_the_file_names_its_key(tmp_path: Path) -> None:
    config_file = tmp_path / "kukeond.yaml"
    config_file.write_text("containerLogMaxFiles: 1\n")
    with pytest.raises(ConfigError, match="containerLogMaxFiles"):
        load_config(config_file=config_file, environ={})


def test_the_most_files_are_taken(tmp_path: Path) -> None:
    config = load_config(environ={"KUKEON_CONTAINER_LOG_MAX_FILES": "100"})
    assert config.log_rotation.max_files == 100
