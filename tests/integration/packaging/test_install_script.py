"""hack/install.sh into a scratch root: what it installs works, and a second run is a no-op.

The install is offline (the wheelhouse the image build keeps), into `--root DIR`, so the
host's /opt, /usr/local and /etc are never touched and systemctl is never run.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from kukeon.daemon.config import load_config

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
