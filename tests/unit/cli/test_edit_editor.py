"""`kukectl edit`'s editor: what it leaves behind, or a command that cannot run, is said
(exit 1 or 2), not an "unexpected failure" traceback line."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from kukeon.cli.edit import _open_in_editor
from kukeon.cli.runner import EXIT_SERVER, EXIT_USAGE


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
