"""`kukectl edit`'s editor: what it leaves behind, or a command that cannot run, is said
(exit 1 or 2), not an "unexpected failure" traceback line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kukeon.cli.edit import _open_in_editor
from kukeon.cli.main import cli
from kukeon.cli.runner import EXIT_SERVER, EXIT_USAGE
from tests.unit.cli.listserver import answering


def _script(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('printf "\\377\\376" > "$1"', "cannot read what the editor saved"),
        ('rm "$1"', "the editor removed the file"),
    ],
    ids=["no UTF-8", "removed"],
)
def test_what_the_editor_left_is_said(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    body: str,
    words: str,
) -> None:
    monkeypatch.setenv("KUKE_EDITOR", _script(tmp_path, body))
    with pytest.raises(click.exceptions.Exit) as exit_info:
        _open_in_editor("kind: Cell\n", ".yaml")
    assert exit_info.value.exit_code == EXIT_SERVER
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "words"),
    [('"unclosed', "No closing quotation"), ("   ", "names no program")],
)
def test_an_editor_command_that_cannot_run_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str, words: str
) -> None:
    monkeypatch.setenv("KUKE_EDITOR", command)
    with pytest.raises(click.exceptions.Exit) as exit_info:
        _open_in_editor("kind: Cell\n", ".yaml")
    assert exit_info.value.exit_code == EXIT_USAGE
    assert words in capsys.readouterr().err


def test_the_editors_text_is_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUKE_EDITOR", _script(tmp_path, 'echo "# é" >> "$1"'))
    assert _open_in_editor("kind: Cell\n", ".yaml") == "kind: Cell\n# é\n"


def test_an_edit_left_refused_says_why_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The editor saved an invalid change, then saved again without touching it: the reason
    is on the error line (it was only in the file's comments) and the edit is kept."""
    cell = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "web", "resourceVersion": "3", "uid": "u-1"},
        "spec": {"containers": [{"id": "main", "image": "busybox", "restartPolicy": "always"}]},
    }
    for name in ("KUKEON_TOKEN", "KUKEON_CA", "KUKEON_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{tmp_path / 'k.sock'}")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the kept copy goes
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv(
        "KUKE_EDITOR", _script(tmp_path, "sed -i 's/Policy: always/Policy: sometimes/' \"$1\"")
    )
    with answering(tmp_path / "k.sock", json.dumps(cell).encode(), methods=("GET",)):
        result = CliRunner().invoke(cli, ["edit", "cell", "web"])
    assert result.exit_code == EXIT_SERVER
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cell/web: the edit was refused and not changed since")
    assert "restartPolicy: must be 'always', 'on-failure' or 'never', got 'sometimes'" in line
    [kept] = tmp_path.glob("kukectl-edit-*.yaml")
    assert str(kept) in line
    assert "restartPolicy: sometimes" in kept.read_text()
