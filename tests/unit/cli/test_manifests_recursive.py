"""`-R/--recursive` of apply, create, diff and delete -f, kubectl's: the manifests of the
directories below a directory too, sorted by path; a link to a directory is not followed.
Without it a directory's subdirectories are not read, and an empty one says -R exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.manifests import read_sources
from kukeon.cli.runner import ManifestProblems

REALM = "apiVersion: v1beta1\nkind: Realm\nmetadata: {{name: {}}}\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    top = tmp_path / "app"
    (top / "web" / "deeper").mkdir(parents=True)
    (top / "a.yaml").write_text(REALM.format("a"))
    (top / "web" / "b.yml").write_text(REALM.format("b"))
    (top / "web" / "deeper" / "c.json").write_text(
        '{"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": "c"}}'
    )
    (top / "web" / "notes.txt").write_text("not a manifest")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.yaml").write_text(REALM.format("x"))
    (top / "link").symlink_to(elsewhere)
    return top


def test_recursive_reads_every_directory_below(tree: Path) -> None:
    labels = [source.label for source in read_sources([str(tree)], recursive=True)]
    assert labels == [
        str(tree / "a.yaml"),
        str(tree / "web" / "b.yml"),
        str(tree / "web" / "deeper" / "c.json"),
    ]
    assert [s.label for s in read_sources([str(tree)])] == [str(tree / "a.yaml")]


def test_a_directory_with_manifests_only_below_names_the_option(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yaml").write_text(REALM.format("a"))
    with pytest.raises(ManifestProblems) as problems:
        read_sources([str(tmp_path)])
    assert problems.value.lines == [
        f"{tmp_path}: no *.yaml, *.yml or *.json files in this directory (-R: and below it)"
    ]


@pytest.mark.parametrize("command", ["apply", "create"])
def test_the_commands_take_it(tree: Path, command: str) -> None:
    args = [command, "-R", "-f", str(tree), "--dry-run=client", "-o", "name"]
    result = CliRunner().invoke(cli, args)
    assert (result.exit_code, result.stdout) == (0, "realm/a\nrealm/b\nrealm/c\n")
    result = CliRunner().invoke(cli, ["delete", "-R", "-f", str(tree), "--dry-run=client"])
    assert result.exit_code == 0
    assert result.stdout.count("deleted (client dry run)") == 3
    assert CliRunner().invoke(cli, ["delete", "-R", "realm", "a"]).exit_code == 2
