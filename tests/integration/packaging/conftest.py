"""The kukeon image, built once per test session, offline, with buildah.

hack/build-image.sh --offline makes the base image from a debootstrap rootfs (cached under
~/.cache/kukeon/image after the first run, so only the first session on a machine pays for
debootstrap) and installs every Python dependency from a wheelhouse, with the build's
network disabled. The image lives in a private buildah storage under the session's tmp dir
and is exported as an OCI archive that tests import into the session's private containerd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.services import require_binary, require_root

REPO = Path(__file__).resolve().parents[3]
BUILD_IMAGE = REPO / "hack" / "build-image.sh"
BUILD_TIMEOUT = 900.0
# The script's own default, named here so tests can use the wheelhouse it keeps.
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kukeon" / "image"


@dataclass(frozen=True)
class BuiltImage:
    name: str
    version: str
    archive: Path
    config: dict[str, Any]
    """`buildah inspect` of the image (Docker format: it keeps the HEALTHCHECK)."""
    wheelhouse: Path
    """Every wheel kukeon depends on (CPython 3.11, glibc x86_64), plus setuptools and wheel."""


@pytest.fixture(scope="session")
def kukeon_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    require_root()
    buildah = require_binary("buildah", "buildah")
    require_binary("debootstrap", "debootstrap", "/usr/sbin")
    require_binary("runc", "runc")
    package_version = version("kukeon")
    name = f"localhost/kukeon:{package_version}"
    work = tmp_path_factory.mktemp("kukeon-image")
    storage = work / "storage"
    archive = work / "kukeon.tar"
    storage_flags = [
        "--root",
        str(storage / "root"),
        "--runroot",
        str(storage / "runroot"),
        "--storage-driver",
        "overlay",
    ]
    try:
        result = subprocess.run(
            [
                "bash",
                str(BUILD_IMAGE),
                "--offline",
                "--cache-dir",
                str(CACHE_DIR),
                "--storage-dir",
                str(storage),
                "--tag",
                name,
                "--oci-archive",
                str(archive),
            ],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            pytest.fail(
                f"hack/build-image.sh --offline failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
                pytrace=False,
            )
        inspected = subprocess.run(
            [buildah, *storage_flags, "inspect", "--type", "image", name],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        yield BuiltImage(
            name=name,
            version=package_version,
            archive=archive,
            config=json.loads(inspected.stdout),
            wheelhouse=CACHE_DIR / "wheelhouse",
        )
    finally:
        subprocess.run(
            [buildah, *storage_flags, "rmi", "--all", "--force"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        unmount_below(storage)
        shutil.rmtree(work, ignore_errors=True)


def unmount_below(directory: Path) -> None:
    """Overlay mounts a failed build may have left in the private storage."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    targets = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{directory}/")]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)
