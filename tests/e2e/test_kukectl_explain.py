"""`kukectl explain` as a user runs it: the installed entry point, with no server at all."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.kukectl import KUKECTL

pytestmark = pytest.mark.e2e


def kukectl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUKEON_SERVER": f"unix://{tmp_path / 'no-server.sock'}",
        "KUKEON_CONFIG": str(tmp_path / "config.yaml"),
    }
    return subprocess.run(
        [KUKECTL, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_explain_works_offline(tmp_path: Path) -> None:
    page = kukectl(tmp_path, "explain", "cell.spec.containers.restartPolicy")
    assert page.returncode == 0, page.stderr
    assert "FIELD: restartPolicy <string>" in page.stdout
    assert "ENUM:    always, on-failure, never" in page.stdout

    tree = kukectl(tmp_path, "explain", "stacks", "--recursive")
    assert tree.returncode == 0, tree.stderr
    assert "KIND:       Stack" in tree.stdout
    assert "  spec\t<Object>" in tree.stdout

    missing = kukectl(tmp_path, "explain", "cell.spec.nope")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.startswith('error: cell.spec.nope: field "nope" does not exist')
    assert "Traceback" not in missing.stderr

    usage = kukectl(tmp_path, "explain", "pod")
    assert usage.returncode == 2
    assert "unknown kind 'pod'" in usage.stderr
