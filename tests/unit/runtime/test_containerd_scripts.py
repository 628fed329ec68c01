"""hack/make-test-image.sh and hack/gen-protos.sh: reproducible, documented, shellcheck clean."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.fixtures.services import require_binary

REPO_ROOT = Path(__file__).resolve().parents[3]
MAKE_TEST_IMAGE = REPO_ROOT / "hack" / "make-test-image.sh"
GEN_PROTOS = REPO_ROOT / "hack" / "gen-protos.sh"


def test_test_image_is_reproducible_and_names_the_image(tmp_path: Path) -> None:
    require_binary("busybox", "busybox-static", "/bin")
    first, second = tmp_path / "a" / "one.tar", tmp_path / "two.tar"
    for out in (first, second):
        subprocess.run(
            [str(MAKE_TEST_IMAGE), str(out), "example.test/box"], check=True, capture_output=True
        )
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = set(tar.getnames())
        assert {"./oci-layout", "./index.json"} <= names
        index = json.load(tar.extractfile("./index.json"))  # type: ignore[arg-type]
    annotations = index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == "example.test/box:latest"
    assert annotations["org.opencontainers.image.ref.name"] == "latest"


@pytest.mark.parametrize("script", [MAKE_TEST_IMAGE, GEN_PROTOS])
def test_scripts_have_help_and_pass_shellcheck(script: Path) -> None:
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage:")
    shellcheck = require_binary("shellcheck", "shellcheck")
    checked = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout


def test_test_image_refuses_bad_usage(tmp_path: Path) -> None:
    result = subprocess.run([str(MAKE_TEST_IMAGE)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "Usage:" in result.stderr
