"""hack/install.sh into a scratch root: what it installs works, and a second run is a no-op.

The install is offline (the wheelhouse the image build keeps), into `--root DIR`, so the
host's /opt, /usr/local and /etc are never touched and systemctl is never run.
"""

from __future__ import annotations

import grp
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from kukeon.daemon.config import load_config
from kukeon.daemon.metricstoken import read_metrics_token

from .conftest import REPO, BuiltImage

# The first test to ask for the image pays for building it (debootstrap on a new machine).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

INSTALL = REPO / "hack" / "install.sh"


def install(root: Path, wheelhouse: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--wheelhouse", str(wheelhouse)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def snapshot(root: Path) -> dict[str, str]:
    """Every regular file below root (the virtualenv aside) with its digest."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and "opt/kukeon/lib" not in str(path):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def installed(kukeon_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("install-root")
    result = install(root, kukeon_image.wheelhouse)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def test_installs_commands_unit_config_and_completion(installed: Path) -> None:
    for command in ("kukectl", "kukeond"):
        link = installed / "usr/local/bin" / command
        assert os.readlink(link) == f"/opt/kukeon/bin/{command}"
        assert (installed / "opt/kukeon/bin" / command).is_file()
    unit = installed / "etc/systemd/system/kukeond.service"
    assert unit.read_text() == (REPO / "hack/kukeond.service").read_text()
    example = installed / "etc/systemd/system/kukeond.service.d/etcd.conf.example"
    assert example.read_text() == (REPO / "hack/kukeond.service.d/etcd.conf").read_text()

    completion = installed / "etc/bash_completion.d/kukectl"
    assert "kukectl" in completion.read_text()
    assert subprocess.run(["bash", "-n", str(completion)], check=False).returncode == 0
    # kukectl's commands described at install time, current for the installed sources: a
    # user's first TAB reads it instead of importing every command.
    current = subprocess.run(
        [
            str(installed / "opt/kukeon/bin/python"),
            "-c",
            "import json; from kukeon.cli import completion as c; "
            "print(json.loads(c.shipped_path().read_text())['key'] == c.cache_key())",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert current.stdout.strip() == "True", current.stderr


def test_default_configuration_is_what_kukeond_reads(installed: Path) -> None:
    config = load_config(config_file=installed / "etc/kukeon/kukeond.yaml", environ={})
    assert config.uses_embedded_etcd
    assert config.api_socket == Path("/run/kukeon/kukeond.sock")
    assert config.metrics_address == "127.0.0.1:9464"
    assert config.metrics_token_file == Path("/etc/kukeon/metrics-token")


def test_a_metrics_token_prometheus_alone_reads_is_generated(installed: Path) -> None:
    """Not the file any local account reads: root's, and Prometheus' group's if it has one
    (0640; 0600 without it); what kukeond reads it with takes it."""
    token_file = installed / "etc/kukeon/metrics-token"
    facts = token_file.stat()
    try:
        prometheus_gid: int | None = grp.getgrnam("prometheus").gr_gid
    except KeyError:
        prometheus_gid = None
    if os.geteuid() == 0 and prometheus_gid is not None:
        assert (stat.S_IMODE(facts.st_mode), facts.st_gid) == (0o640, prometheus_gid)
    else:
        assert stat.S_IMODE(facts.st_mode) == 0o600
    assert len(read_metrics_token(token_file)) == 64


def test_installed_kukectl_reports_the_package_version(
    installed: Path, kukeon_image: BuiltImage
) -> None:
    result = subprocess.run(
        [str(installed / "opt/kukeon/bin/kukectl"), "version", "--client"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Client Version: {kukeon_image.version}"


def test_second_run_changes_nothing_and_keeps_an_edited_config(
    installed: Path, kukeon_image: BuiltImage
) -> None:
    config = installed / "etc/kukeon/kukeond.yaml"
    config.write_text(config.read_text() + "# edited by the operator\n")
    before = snapshot(installed)

    result = install(installed, kukeon_image.wheelhouse)

    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(installed) == before
    assert "kukeond.yaml exists, left as it is" in result.stdout
    assert "kukeond.service is up to date" in result.stdout
