"""The image built from the Dockerfile, offline, runs kukectl under containerd.

The image is imported once into a containerd namespace of this module's own on the
session's private containerd, and every check runs a container from it with `ctr run`.

Running it as a kukeon cell through kukeond's cell controller, and `kukectl version`
reaching the server from inside it, are in test_image_as_cell.py.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.runtime.containerd import ContainerdClient
from tests.fixtures.containerd import PrivateContainerd, clean_namespace
from tests.fixtures.services import require_binary

from .conftest import BuiltImage

# The first test to ask for the image pays for building it (debootstrap on a new machine).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

RUN_TIMEOUT = 120.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


class Ctr:
    """`ctr` on the private containerd, in one namespace."""

    def __init__(self, daemon: PrivateContainerd, namespace: str) -> None:
        self.binary = require_binary("ctr", "containerd")
        self.daemon = daemon
        self.namespace = namespace

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "--address", self.daemon.address, "--namespace", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def run(self, image: str, *command: str) -> subprocess.CompletedProcess[str]:
        return self("run", "--rm", image, f"kt-image-{secrets.token_hex(4)}", *command)


async def _clean(daemon: PrivateContainerd, namespace: str) -> None:
    client = ContainerdClient(daemon.address, retry_timeout=30.0)
    try:
        await clean_namespace(client, namespace)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def ctr(kukeon_image: BuiltImage, containerd_daemon: PrivateContainerd) -> Iterator[Ctr]:
    """A namespace holding the imported image, emptied and removed after the module."""
    tool = Ctr(containerd_daemon, f"kt-image-{secrets.token_hex(4)}")
    try:
        result = tool("images", "import", str(kukeon_image.archive))
        assert result.returncode == 0, result.stderr
        yield tool
    finally:
        asyncio.run(_clean(containerd_daemon, tool.namespace))
        _remove_namespace_cgroups(tool.namespace)


def _remove_namespace_cgroups(namespace: str) -> None:
    """`ctr run` puts each container under /<namespace>/<id> in every hierarchy; --rm
    removes the container's directory but leaves the namespace's."""
    for hierarchy in CGROUP_ROOT.iterdir():
        if (hierarchy / namespace).is_dir():
            (hierarchy / namespace).rmdir()


def test_import_names_the_image(ctr: Ctr, kukeon_image: BuiltImage) -> None:
    listed = ctr("images", "list", "--quiet")
    assert kukeon_image.name in listed.stdout.split(), listed.stdout + listed.stderr


def test_kukectl_version_runs_in_the_image(ctr: Ctr, kukeon_image: BuiltImage) -> None:
    result = ctr.run(kukeon_image.name, "kukectl", "version", "--client")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"Client Version: {kukeon_image.version}"


def test_image_runs_unprivileged_by_default_with_kukeond_and_its_tools(
    ctr: Ctr, kukeon_image: BuiltImage
) -> None:
    script = (
        "id -u; id -un; kukeond --help >/dev/null && echo kukeond-ok; "
        "nft --version; iptables --version"
    )
    result = ctr.run(kukeon_image.name, "sh", "-c", script)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["10001", "kukeon", "kukeond-ok"]
    assert lines[3].startswith("nftables v")
    assert lines[4].startswith("iptables v")


def test_image_metadata(kukeon_image: BuiltImage) -> None:
    config = kukeon_image.config
    labels = config["OCIv1"]["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == kukeon_image.version
    assert labels["org.opencontainers.image.title"] == "kukeon"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    docker_config = config["Docker"]["config"]
    assert docker_config["User"] == "kukeon"
    assert docker_config["Healthcheck"]["Test"][0] == "CMD"
    assert "/healthz" in " ".join(docker_config["Healthcheck"]["Test"])
    assert any(item.startswith("PATH=/opt/kukeon/bin:") for item in docker_config["Env"])
    # kukeond from the image gives its API socket no group (the image's kukeon is gid 10001).
    assert "KUKEON_API_SOCKET_GROUP=" in docker_config["Env"]


def test_oci_archive_names_the_image(kukeon_image: BuiltImage, tmp_path: Path) -> None:
    subprocess.run(
        ["tar", "-xf", str(kukeon_image.archive), "-C", str(tmp_path), "index.json"], check=True
    )
    index = (tmp_path / "index.json").read_text()
    assert f'"org.opencontainers.image.ref.name":"{kukeon_image.name}"' in index
