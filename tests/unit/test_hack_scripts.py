"""Every script in hack/ meets the bar operators and CI rely on.

Each one stops at the first failing command (`set -euo pipefail`), explains itself with
`--help` (exit 0, without doing anything else), and is clean under shellcheck. A script
that does not mention --help at all is never executed here: running it with an unknown
argument could do real work on the host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fixtures.services import require_binary

HACK = Path(__file__).resolve().parents[2] / "hack"
SCRIPTS = sorted(HACK.glob("*.sh"))


def test_hack_has_scripts() -> None:
    assert SCRIPTS, f"no scripts found in {HACK}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_stops_on_errors(script: Path) -> None:
    lines = [line.strip() for line in script.read_text().splitlines()]
    assert lines[0] in {"#!/usr/bin/env bash", "#!/bin/bash"}, f"{script.name}: not a bash script"
    assert "set -euo pipefail" in lines, f"{script.name}: no `set -euo pipefail` line"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_answers_help(script: Path) -> None:
    assert "--help" in script.read_text(), f"{script.name}: does not handle --help"
    result = subprocess.run(
        ["bash", str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"{script.name} --help exited {result.returncode}: {result.stderr}"
    )
    assert "usage" in (result.stdout + result.stderr).lower(), (
        f"{script.name} --help: no usage text"
    )


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = require_binary("shellcheck", "shellcheck")
    result = subprocess.run(
        [shellcheck, "--format=gcc", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
